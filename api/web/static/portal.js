/* Nightjar portal: the light-curve plot, the sky maps and the query page's helpers. No inline scripts: the
   pages' data arrive as JSON blocks (<script type="application/json">). */
(function () {
  "use strict";

  var BAND_COLORS = { u: "#56b4e9", g: "#009e73", r: "#d55e00", i: "#cc79a7", z: "#0072b2", y: "#e69f00" };
  var FONT = { family: "system-ui, sans-serif", size: 13 };

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function byBand(rows) {
    var groups = {};
    var order = [];
    rows.forEach(function (row) {
      var band = row.band || "?";
      if (!groups[band]) { groups[band] = []; order.push(band); }
      groups[band].push(row);
    });
    order.sort(function (a, b) { return "ugrizy".indexOf(a) - "ugrizy".indexOf(b); });
    return order.map(function (band) { return [band, groups[band]]; });
  }

  function lightCurveTraces(data, unit) {
    var traces = [];
    [["detections", data.detections || []], ["forced", data.forced || []]].forEach(function (part) {
      var kind = part[0];
      byBand(part[1]).forEach(function (entry) {
        var band = entry[0];
        var points = entry[1].filter(function (p) {
          return p.psfFlux !== null && p.psfFlux !== undefined && (unit === "flux" || p.psfFlux > 0);
        });
        var mag = unit === "mag";
        traces.push({
          type: "scatter",
          mode: "markers",
          name: kind === "forced" ? band + " forced" : band,
          legendgroup: band,
          meta: { kind: kind, band: band },
          x: points.map(function (p) { return p.midpointMjdTai; }),
          y: points.map(function (p) { return mag ? 31.4 - 2.5 * Math.log10(p.psfFlux) : p.psfFlux; }),
          error_y: {
            type: "data",
            visible: true,
            thickness: 1,
            array: points.map(function (p) {
              if (p.psfFluxErr === null || p.psfFluxErr === undefined) { return 0; }
              return mag ? 1.0857 * p.psfFluxErr / p.psfFlux : p.psfFluxErr;
            })
          },
          marker: {
            color: BAND_COLORS[band] || "#555",
            symbol: kind === "forced" ? "circle-open" : "circle",
            size: kind === "forced" ? 6 : 8
          }
        });
      });
    });
    return traces;
  }

  function lightCurveLayout(unit) {
    return {
      font: FONT,
      margin: { l: 60, r: 10, t: 10, b: 45 },
      xaxis: { title: { text: "MJD (TAI)" }, tickformat: ".2f", hoverformat: ".5f", exponentformat: "none" },
      yaxis: unit === "mag"
        ? { title: { text: "AB magnitude" }, autorange: "reversed" }
        : { title: { text: "PSF flux (nJy)" } },
      legend: { orientation: "h", y: -0.2 }
    };
  }

  function lightCurve() {
    var node = document.getElementById("lightcurve");
    var data = readJson("lc-data");
    if (!node || !data || !window.Plotly) { return; }
    var config = { responsive: true, displaylogo: false };
    var draw = function (unit) {
      window.Plotly.react(node, lightCurveTraces(data, unit), lightCurveLayout(unit), config);
      node.setAttribute("data-unit", unit);
      document.getElementById("show-flux").setAttribute("aria-pressed", String(unit === "flux"));
      document.getElementById("show-mag").setAttribute("aria-pressed", String(unit === "mag"));
    };
    document.getElementById("show-flux").addEventListener("click", function () { draw("flux"); });
    document.getElementById("show-mag").addEventListener("click", function () { draw("mag"); });
    draw("flux");
    node.setAttribute("data-ready", "true");
  }

  function skyMap() {
    var node = document.getElementById("skymap");
    var traces = readJson("sky-data");
    if (!node || !traces || !window.Plotly) { return; }
    window.Plotly.newPlot(node, traces, {
      font: FONT,
      margin: { l: 5, r: 5, t: 5, b: 5 },
      xaxis: { visible: false, range: [-2.9, 2.9] },
      yaxis: { visible: false, range: [-1.45, 1.45], scaleanchor: "x" },
      legend: { orientation: "h" }
    }, { responsive: true, displaylogo: false }).then(function () { node.setAttribute("data-ready", "true"); });
  }

  function queryPage() {
    var sql = document.getElementById("sql");
    if (!sql) { return; }
    Array.prototype.forEach.call(document.querySelectorAll("button.example"), function (button) {
      button.addEventListener("click", function () {
        sql.value = button.getAttribute("data-sql");
        sql.focus();
      });
    });
    var asFilter = document.getElementById("as-filter");
    if (asFilter) {
      asFilter.addEventListener("click", function (event) {
        event.preventDefault();
        window.location.href = "/filters/new?sql=" + encodeURIComponent(sql.value);
      });
    }
  }

  function start() {
    lightCurve();
    skyMap();
    queryPage();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
