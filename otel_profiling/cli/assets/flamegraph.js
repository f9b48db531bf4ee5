(function () {
  "use strict";
  // The flame graph of one profile (graph.js draws it): widths are each frame's total.
  var data = JSON.parse(document.getElementById("profile-data").textContent);
  var names = data.names, n = data.n, v = data.v, s = data.s;

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

  var sortKey = 2;  // the top functions table: [function, location, self, total]
  var chart = flameChart({
    data: data,
    table: "top-body",
    width: function (k) { return v[k]; },
    look: function (k) { return {cls: "", color: color(names[n[k]])}; },
    values: function (k) {
      return "total " + fmt(v[k]) + " (" + pct(v[k]) + "), self " + fmt(s[k]);
    },
    matched: function (tops) {
      var total = 0;
      tops.forEach(function (k) { total += v[k]; });
      return fmt(total) + " (" + pct(total) + ")";
    },
    rows: function () {
      return data.top.slice().sort(function (a, b) { return b[sortKey] - a[sortKey]; });
    },
    cells: function (row) {
      return [[row[0], "fn"], [row[1], "loc"], [fmt(row[2]), "num"], [pct(row[2]), "num"],
              [fmt(row[3]), "num"], [pct(row[3]), "num"]];
    },
    fromHash: function () {}
  });
  document.getElementById("sort-self").addEventListener("click", function () { sortKey = 2; chart.fillTable(); });
  document.getElementById("sort-total").addEventListener("click", function () { sortKey = 3; chart.fillTable(); });
})();
