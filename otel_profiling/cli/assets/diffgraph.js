(function () {
  "use strict";
  // Differential flame graph: widths are AFTER's shares; colours compare each stack's share
  // of BEFORE's total with its share of AFTER's total. Stacks only in BEFORE take no width
  // unless "show stacks only in BEFORE" is on; then each frame also spans their BEFORE share.
  var data = JSON.parse(document.getElementById("profile-data").textContent);
  var names = data.names, locs = data.locs;
  var n = data.n, l = data.l, p = data.p, a = data.a, b = data.b, g = data.g;
  var selfA = data.as, selfB = data.bs;
  var count = n.length, ROW = 18, i;
  var children = [];
  for (i = 0; i < count; i++) children.push([]);
  for (i = 1; i < count; i++) children[p[i]].push(i);

  var chart = document.getElementById("chart");
  var details = document.getElementById("details");
  var search = document.getElementById("search");
  var matchInfo = document.getElementById("match");
  var showGone = document.getElementById("show-gone");
  var zoomed = 0, query = "";

  // the largest change of a stack seen on both sides: the full red or blue
  var scale = data.scale;
  for (i = 1; i < count; i++) {
    if (a[i] > 0 && b[i] > 0) scale = Math.max(scale, Math.abs(a[i] - b[i]));
  }

  function width(k) { return a[k] + (showGone.checked ? g[k] : 0); }
  function pct(x) { return (100 * x).toFixed(2) + "%"; }
  function points(x) { return (x >= 0 ? "+" : "\u2212") + Math.abs(100 * x).toFixed(2) + " pts"; }
  function status(k) {
    if (b[k] === 0 && a[k] > 0) return "new";
    if (a[k] === 0 && b[k] > 0) return "gone";
    var delta = a[k] - b[k];
    if (Math.abs(delta) < data.same) return "same";
    return delta > 0 ? "grew" : "shrank";
  }
  function color(k, kind) {
    if (data.palette[kind]) return data.palette[kind];
    var t = Math.min(1, Math.abs(a[k] - b[k]) / scale);
    return "hsl(" + data.hues[kind] + ",75%," + (88 - 30 * t).toFixed(0) + "%)";
  }
  var keys = document.querySelectorAll(".legend .key");
  for (i = 0; i < keys.length; i++) {
    var kind = keys[i].className.split(" ")[1];
    keys[i].style.backgroundColor = data.palette[kind] || "hsl(" + data.hues[kind] + ",75%,58%)";
  }
  function label(k) { return names[n[k]] + (locs[l[k]] ? " (" + locs[l[k]] + ")" : ""); }
  function describe(k) {
    return label(k) + "\nbefore " + pct(b[k]) + ", after " + pct(a[k]) + " (" + points(a[k] - b[k]) +
      "); self before " + pct(selfB[k]) + ", after " + pct(selfA[k]);
  }
  function isMatch(k) {
    if (!query || k === 0) return false;
    return label(k).toLowerCase().indexOf(query) >= 0;
  }

  function box(frag, k, x, w, row, extra) {
    var d = document.createElement("div");
    var kind = status(k);
    var matched = isMatch(k);
    d.className = "f " + kind + extra + (matched ? " match" : query ? " dim" : "");
    d.style.left = x.toFixed(1) + "px";
    d.style.width = Math.max(w - 1, 0.5).toFixed(1) + "px";
    d.style.top = (row * ROW) + "px";
    d.style.backgroundColor = color(k, kind);
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
    for (var r = 0; r < base; r++) box(frag, chain[r], 0, full, r, " anc");
    var px = full / (width(zoomed) || 1);
    var stack = [[zoomed, 0, base]];
    while (stack.length) {
      var item = stack.pop(), k = item[0], x = item[1], row = item[2], w = width(k) * px;
      if (w < 0.5) continue;
      box(frag, k, x, w, row, "");
      if (row > maxRow) maxRow = row;
      var cx = x, ch = children[k];
      for (var c = 0; c < ch.length; c++) {
        stack.push([ch[c], cx, row + 1]);
        cx += width(ch[c]) * px;
      }
    }
    chart.textContent = "";
    chart.style.height = ((maxRow + 1) * ROW + 2) + "px";
    chart.appendChild(frag);
    document.body.setAttribute("data-rendered", String(chart.children.length));
  }

  function updateMatch() {
    if (!query) { matchInfo.textContent = ""; return; }
    var under = new Array(count), before = 0, after = 0, hits = 0;
    under[0] = false;
    for (var k = 1; k < count; k++) {
      var m = isMatch(k);
      if (m) hits++;
      if (m && !under[p[k]]) { before += b[k]; after += a[k]; }
      under[k] = under[p[k]] || m;
    }
    matchInfo.textContent = hits ? "matched " + hits + (hits === 1 ? " frame: " : " frames: ") +
      "before " + pct(before) + ", after " + pct(after) + " (" + points(after - before) + ")" : "no match";
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
    details.textContent = describe(+k).replace("\n", " \u2014 ");
  });
  document.getElementById("reset").addEventListener("click", function () { zoomed = 0; render(); });
  document.getElementById("clear").addEventListener("click", function () { setQuery(""); });
  showGone.addEventListener("change", function () {
    if (!showGone.checked && a[zoomed] === 0) zoomed = 0;
    render();
  });
  search.addEventListener("input", function () { setQuery(search.value); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { zoomed = 0; setQuery(""); }
    if ((event.ctrlKey || event.metaKey) && event.key === "f") { event.preventDefault(); search.focus(); }
  });
  window.addEventListener("resize", render);

  // the changes table: [function, location, before, after, change]; sorted by a column,
  // the change column by its size either way
  var tbody = document.getElementById("changes");
  var sortKey = 5;
  function sortValue(row, key) { return key === 5 ? Math.abs(row[4]) : row[key]; }
  function fillTable() {
    var rows = data.fns.slice().sort(function (x, y) {
      var vx = sortValue(x, sortKey), vy = sortValue(y, sortKey);
      if (typeof vx === "string") return vx < vy ? -1 : vx > vy ? 1 : 0;
      return vy - vx;
    });
    tbody.textContent = "";
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.className = "row";
      tr.setAttribute("data-name", row[0]);
      var cells = [[row[0], "fn"], [row[1], "loc"], [pct(row[2]), "num"], [pct(row[3]), "num"],
                   [points(row[4]), "num " + (row[4] > 0 ? "up" : row[4] < 0 ? "down" : "")]];
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
  var heads = document.querySelectorAll("th[data-sort]");
  for (i = 0; i < heads.length; i++) {
    heads[i].addEventListener("click", function (event) {
      sortKey = +event.currentTarget.getAttribute("data-sort");
      fillTable();
    });
  }

  // deep links: #q=TEXT searches, #zoom=NAME zooms into the widest frame of that function,
  // #gone=1 shows the stacks only in BEFORE, #sort=N sorts the table by column N
  function fromHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
      var kv = pair.split("=");
      if (kv[0]) params[kv[0]] = decodeURIComponent(kv.slice(1).join("="));
    });
    if (params.gone === "1") showGone.checked = true;
    if (params.sort) { sortKey = +params.sort; fillTable(); }
    if (params.zoom) {
      for (var k = 1; k < count; k++) {
        if (names[n[k]] === params.zoom && width(k) > 0) { zoomed = k; break; }
      }
    }
    if (params.q) setQuery(params.q);
  }

  fillTable();
  fromHash();
  render();
})();
