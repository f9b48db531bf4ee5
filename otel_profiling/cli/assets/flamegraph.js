(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("profile-data").textContent);
  var names = data.names, locs = data.locs;
  var n = data.n, l = data.l, p = data.p, v = data.v, s = data.s;
  var count = n.length, ROW = 18, i;
  var children = [];
  for (i = 0; i < count; i++) children.push([]);
  for (i = 1; i < count; i++) children[p[i]].push(i);

  var chart = document.getElementById("chart");
  var details = document.getElementById("details");
  var search = document.getElementById("search");
  var matchInfo = document.getElementById("match");
  var zoomed = 0, query = "";

  function fmt(x) {
    if (data.unit === "bytes") {
      var units = ["B", "KiB", "MiB", "GiB", "TiB"], k = 0;
      while (Math.abs(x) >= 1024 && k < units.length - 1) { x /= 1024; k++; }
      return (k ? x.toFixed(1) : Math.round(x)) + " " + units[k];
    }
    if (data.unit === "seconds") {
      if (x >= 1) return x.toFixed(2) + " s";
      if (x >= 1e-3) return (x * 1e3).toFixed(1) + " ms";
      return (x * 1e6).toFixed(0) + " \u00b5s";
    }
    return Math.round(x) + " samples";
  }
  function pct(x) { return v[0] > 0 ? (100 * x / v[0]).toFixed(2) + "%" : "0%"; }
  function hue(text) {
    var h = 0;
    for (var k = 0; k < text.length; k++) h = (h * 31 + text.charCodeAt(k)) | 0;
    return Math.abs(h);
  }
  function color(name) {
    var h = hue(name);
    if (data.unit === "bytes") return "hsl(" + (190 + h % 50) + ",60%," + (62 + h % 15) + "%)";
    return "hsl(" + (h % 55) + "," + (75 + h % 20) + "%," + (55 + h % 12) + "%)";
  }
  function label(k) { return names[n[k]] + (locs[l[k]] ? " (" + locs[l[k]] + ")" : ""); }
  function isMatch(k) {
    if (!query || k === 0) return false;
    return label(k).toLowerCase().indexOf(query) >= 0;
  }

  function box(frag, k, x, w, row, cls) {
    var d = document.createElement("div");
    var matched = isMatch(k);
    d.className = "f" + cls + (matched ? " match" : query ? " dim" : "");
    d.style.left = x.toFixed(1) + "px";
    d.style.width = Math.max(w - 1, 0.5).toFixed(1) + "px";
    d.style.top = (row * ROW) + "px";
    d.style.backgroundColor = color(names[n[k]]);
    d.setAttribute("data-i", k);
    d.title = label(k) + "\n" + fmt(v[k]) + " (" + pct(v[k]) + "), self " + fmt(s[k]);
    if (w >= 28) d.textContent = names[n[k]];
    frag.appendChild(d);
  }

  function render() {
    var width = chart.clientWidth || 1200;
    var frag = document.createDocumentFragment();
    var chain = [];
    for (var a = zoomed; a !== -1; a = p[a]) chain.unshift(a);
    var base = chain.length - 1, maxRow = base;
    for (var r = 0; r < base; r++) box(frag, chain[r], 0, width, r, " anc");
    var scale = width / (v[zoomed] || 1);
    var stack = [[zoomed, 0, base]];
    while (stack.length) {
      var item = stack.pop(), k = item[0], x = item[1], row = item[2], w = v[k] * scale;
      if (w < 0.5) continue;
      box(frag, k, x, w, row, "");
      if (row > maxRow) maxRow = row;
      var cx = x, ch = children[k];
      for (var c = 0; c < ch.length; c++) {
        stack.push([ch[c], cx, row + 1]);
        cx += v[ch[c]] * scale;
      }
    }
    chart.textContent = "";
    chart.style.height = ((maxRow + 1) * ROW + 2) + "px";
    chart.appendChild(frag);
  }

  function updateMatch() {
    if (!query) { matchInfo.textContent = ""; return; }
    var under = new Array(count), total = 0, hits = 0;
    under[0] = false;
    for (var k = 1; k < count; k++) {
      var m = isMatch(k);
      if (m) hits++;
      if (m && !under[p[k]]) total += v[k];
      under[k] = under[p[k]] || m;
    }
    matchInfo.textContent = hits ? "matched " + hits + (hits === 1 ? " frame: " : " frames: ") + fmt(total) + " (" + pct(total) + ")" : "no match";
  }

  function setQuery(text) {
    query = text.trim().toLowerCase();
    search.value = text;
    updateMatch();
    render();
    filterTable();
  }

  chart.addEventListener("click", function (event) {
    var k = event.target.getAttribute && event.target.getAttribute("data-i");
    if (k === null || k === undefined) return;
    zoomed = +k;
    render();
  });
  chart.addEventListener("mousemove", function (event) {
    var k = event.target.getAttribute && event.target.getAttribute("data-i");
    if (k === null || k === undefined) return;
    k = +k;
    details.textContent = label(k) + " \u2014 total " + fmt(v[k]) + " (" + pct(v[k]) + "), self " + fmt(s[k]);
  });
  document.getElementById("reset").addEventListener("click", function () { zoomed = 0; render(); });
  document.getElementById("clear").addEventListener("click", function () { setQuery(""); });
  search.addEventListener("input", function () { setQuery(search.value); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { zoomed = 0; setQuery(""); }
    if ((event.ctrlKey || event.metaKey) && event.key === "f") { event.preventDefault(); search.focus(); }
  });
  window.addEventListener("resize", render);

  // top functions table
  var tbody = document.getElementById("top-body");
  var sortKey = 2;
  function fillTable() {
    var rows = data.top.slice().sort(function (a, b) { return b[sortKey] - a[sortKey]; });
    tbody.textContent = "";
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.className = "row";
      tr.setAttribute("data-name", row[0]);
      var cells = [[row[0], "fn"], [row[1], "loc"], [fmt(row[2]), "num"], [pct(row[2]), "num"],
                   [fmt(row[3]), "num"], [pct(row[3]), "num"]];
      cells.forEach(function (cell) {
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
  document.getElementById("sort-self").addEventListener("click", function () { sortKey = 2; fillTable(); });
  document.getElementById("sort-total").addEventListener("click", function () { sortKey = 3; fillTable(); });

  // deep links: #q=TEXT searches, #zoom=NAME zooms into the widest frame of that function
  function fromHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
      var kv = pair.split("=");
      if (kv[0]) params[kv[0]] = decodeURIComponent(kv.slice(1).join("="));
    });
    if (params.zoom) {
      for (var k = 1; k < count; k++) {
        if (names[n[k]] === params.zoom) { zoomed = k; break; }
      }
    }
    if (params.q) setQuery(params.q);
  }

  fillTable();
  fromHash();
  render();
  document.body.setAttribute("data-rendered", String(chart.children.length));
})();
