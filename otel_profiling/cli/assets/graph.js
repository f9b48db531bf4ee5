// What the flame graph and the differential flame graph share: the chart (root on top,
// zoom by click, the zoomed frame's ancestors kept as full-width rows), search with its
// match summary, the table's filter, and #key=value deep links. Each page calls
// flameChart(spec) with what differs between them:
//   spec.data           the page's data (names, locs, n, l, p per frame)
//   spec.width(k)       frame k's width, in the page's own measure
//   spec.look(k)        {cls: extra class names (" grew"), color: its background}
//   spec.values(k)      frame k's values, shown after its name in its tooltip and details
//   spec.matched(tops)  the summary of the outermost matching frames
//   spec.table          the id of the table's body
//   spec.rows()         the table's rows, sorted: [[function, location, ...], ...]
//   spec.cells(row)     a row's cells: [[text, class names], ...]
//   spec.fromHash(params)  the page's own deep links, before #zoom and #q
// It returns {render, fillTable, zoom(k)} for the page's own controls.
function flameChart(spec) {
  "use strict";
  var data = spec.data, names = data.names, locs = data.locs;
  var n = data.n, l = data.l, p = data.p;
  var count = n.length, ROW = 18, i;
  var children = [];
  for (i = 0; i < count; i++) children.push([]);
  for (i = 1; i < count; i++) children[p[i]].push(i);

  var chart = document.getElementById("chart");
  var details = document.getElementById("details");
  var search = document.getElementById("search");
  var matchInfo = document.getElementById("match");
  var tbody = document.getElementById(spec.table);
  var zoomed = 0, query = "";

  function label(k) { return names[n[k]] + (locs[l[k]] ? " (" + locs[l[k]] + ")" : ""); }
  function describe(k) { return label(k) + "\n" + spec.values(k); }
  function isMatch(k) {
    if (!query || k === 0) return false;
    return label(k).toLowerCase().indexOf(query) >= 0;
  }

  function box(frag, k, x, w, row, ancestor) {
    var d = document.createElement("div");
    var look = spec.look(k);
    d.className = "f" + look.cls + (ancestor ? " anc" : "") +
      (isMatch(k) ? " match" : query ? " dim" : "");
    d.style.left = x.toFixed(1) + "px";
    d.style.width = Math.max(w - 1, 0.5).toFixed(1) + "px";
    d.style.top = (row * ROW) + "px";
    d.style.backgroundColor = look.color;
    d.setAttribute("data-i", k);
    d.title = describe(k);
    if (w >= 28) d.textContent = names[n[k]];
    frag.appendChild(d);
  }

  function render() {
    var full = chart.clientWidth || 1200;
    var frag = document.createDocumentFragment();
    var chain = [];
    for (var up = zoomed; up !== -1; up = p[up]) chain.unshift(up);
    var base = chain.length - 1, maxRow = base;
    for (var r = 0; r < base; r++) box(frag, chain[r], 0, full, r, true);
    var px = full / (spec.width(zoomed) || 1);
    var stack = [[zoomed, 0, base]];
    while (stack.length) {
      var item = stack.pop(), k = item[0], x = item[1], row = item[2], w = spec.width(k) * px;
      if (w < 0.5) continue;
      box(frag, k, x, w, row, false);
      if (row > maxRow) maxRow = row;
      var cx = x, ch = children[k];
      for (var c = 0; c < ch.length; c++) {
        stack.push([ch[c], cx, row + 1]);
        cx += spec.width(ch[c]) * px;
      }
    }
    chart.textContent = "";
    chart.style.height = ((maxRow + 1) * ROW + 2) + "px";
    chart.appendChild(frag);
    document.body.setAttribute("data-rendered", String(chart.children.length));
  }

  function updateMatch() {
    if (!query) { matchInfo.textContent = ""; return; }
    var under = new Array(count), tops = [], hits = 0;
    under[0] = false;
    for (var k = 1; k < count; k++) {
      var m = isMatch(k);
      if (m) hits++;
      if (m && !under[p[k]]) tops.push(k);  // outermost: a match's matches count once
      under[k] = under[p[k]] || m;
    }
    matchInfo.textContent = hits ? "matched " + hits + (hits === 1 ? " frame: " : " frames: ") +
      spec.matched(tops) : "no match";
  }

  function fillTable() {
    tbody.textContent = "";
    spec.rows().forEach(function (row) {
      var tr = document.createElement("tr");
      tr.className = "row";
      tr.setAttribute("data-name", row[0]);
      spec.cells(row).forEach(function (cell) {
        var td = document.createElement("td");
        td.className = cell[1];
        td.textContent = cell[0];
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () { setQuery(row[0]); window.scrollTo(0, 0); });
      tbody.appendChild(tr);
    });
    filterTable();
  }
  function filterTable() {
    var rows = tbody.children;
    for (var k = 0; k < rows.length; k++) {
      var text = (rows[k].getAttribute("data-name") + " " + rows[k].children[1].textContent).toLowerCase();
      rows[k].style.display = !query || text.indexOf(query) >= 0 ? "" : "none";
    }
  }

  function setQuery(text) {
    query = text.trim().toLowerCase();
    search.value = text;
    updateMatch();
    render();
    filterTable();
  }
  function zoom(k) { zoomed = k; render(); }
  function frameAt(event) {
    var k = event.target.getAttribute && event.target.getAttribute("data-i");
    return k === null || k === undefined ? null : +k;
  }

  chart.addEventListener("click", function (event) {
    var k = frameAt(event);
    if (k !== null) zoom(k);
  });
  chart.addEventListener("mousemove", function (event) {
    var k = frameAt(event);
    if (k !== null) details.textContent = describe(k).replace("\n", " \u2014 ");
  });
  document.getElementById("reset").addEventListener("click", function () { zoom(0); });
  document.getElementById("clear").addEventListener("click", function () { setQuery(""); });
  search.addEventListener("input", function () { setQuery(search.value); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { zoomed = 0; setQuery(""); }
    if ((event.ctrlKey || event.metaKey) && event.key === "f") { event.preventDefault(); search.focus(); }
  });
  window.addEventListener("resize", render);

  // deep links: #q=TEXT searches, #zoom=NAME zooms into the first (widest) frame of that
  // function; the page reads its own first
  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
    var kv = pair.split("=");
    if (kv[0]) params[kv[0]] = decodeURIComponent(kv.slice(1).join("="));
  });
  spec.fromHash(params);
  fillTable();
  if (params.zoom) {
    for (i = 1; i < count; i++) {
      if (names[n[i]] === params.zoom && spec.width(i) > 0) { zoomed = i; break; }
    }
  }
  if (params.q) setQuery(params.q);
  render();
  return {render: render, fillTable: fillTable, zoom: zoom, zoomed: function () { return zoomed; }};
}
