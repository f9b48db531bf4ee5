(function () {
  "use strict";
  // Differential flame graph (graph.js draws it): widths are AFTER's shares; colours compare
  // each stack's share of BEFORE's total with its share of AFTER's total. Stacks only in
  // BEFORE take no width unless "show stacks only in BEFORE" is on; then each frame also
  // spans their BEFORE share.
  var data = JSON.parse(document.getElementById("profile-data").textContent);
  var count = data.n.length, i;
  var a = data.a, b = data.b, g = data.g, selfA = data.as, selfB = data.bs;
  var showGone = document.getElementById("show-gone");

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

  // the changes table: [function, location, before, after, change]; sorted by a column,
  // the change column (5) by its size either way
  var sortKey = 5;
  function sortValue(row, key) { return key === 5 ? Math.abs(row[4]) : row[key]; }

  var chart = flameChart({
    data: data,
    table: "changes",
    width: width,
    look: function (k) { var kind = status(k); return {cls: " " + kind, color: color(k, kind)}; },
    values: function (k) {
      return "before " + pct(b[k]) + ", after " + pct(a[k]) + " (" + points(a[k] - b[k]) +
        "); self before " + pct(selfB[k]) + ", after " + pct(selfA[k]);
    },
    matched: function (tops) {
      var before = 0, after = 0;
      tops.forEach(function (k) { before += b[k]; after += a[k]; });
      return "before " + pct(before) + ", after " + pct(after) + " (" + points(after - before) + ")";
    },
    rows: function () {
      return data.fns.slice().sort(function (x, y) {
        var vx = sortValue(x, sortKey), vy = sortValue(y, sortKey);
        if (typeof vx === "string") return vx < vy ? -1 : vx > vy ? 1 : 0;
        return vy - vx;
      });
    },
    cells: function (row) {
      return [[row[0], "fn"], [row[1], "loc"], [pct(row[2]), "num"], [pct(row[3]), "num"],
              [points(row[4]), "num " + (row[4] > 0 ? "up" : row[4] < 0 ? "down" : "")]];
    },
    // #gone=1 shows the stacks only in BEFORE, #sort=N sorts the table by column N
    fromHash: function (params) {
      if (params.gone === "1") showGone.checked = true;
      if (params.sort) sortKey = +params.sort;
    }
  });

  showGone.addEventListener("change", function () {
    if (!showGone.checked && a[chart.zoomed()] === 0) chart.zoom(0);
    else chart.render();
  });
  var heads = document.querySelectorAll("th[data-sort]");
  for (i = 0; i < heads.length; i++) {
    heads[i].addEventListener("click", function (event) {
      sortKey = +event.currentTarget.getAttribute("data-sort");
      chart.fillTable();
    });
  }
})();
