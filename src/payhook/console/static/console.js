// payhook console: polls /console/api/stats every 2 s, updates the counts and draws two charts.
// No libraries; everything else on the page works without JavaScript.
(function () {
  "use strict";
  var charts = document.getElementById("charts");
  if (!charts) { return; }
  var url = charts.getAttribute("data-stats-url");

  function setCounts(stats) {
    var values = Object.assign({}, stats.by_status, {
      due_backlog: stats.due_backlog,
      oldest_due_age_seconds: stats.oldest_due_age_seconds.toFixed(1),
      destination: stats.destination
    });
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var key = el.getAttribute("data-count");
      el.textContent = values[key] === undefined ? "0" : String(values[key]);
    });
  }

  function prepare(canvas) {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = width * ratio; canvas.height = height * ratio;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx: ctx, width: width, height: height };
  }

  function perSecond(value) { return Math.round(value) + "/s"; }

  // Lateness is mostly milliseconds: written in ms below a second, in s above.
  function duration(seconds) {
    return seconds < 1 ? Math.round(seconds * 1000) + " ms" : seconds.toFixed(2) + " s";
  }

  // Bars for a series of values, scaled to their real maximum, which is written at the top left
  // and in the canvas's label (for screen readers).
  function bars(canvas, values, colour, format) {
    var c = prepare(canvas), max = Math.max.apply(null, values.concat([0]));
    var plot = c.height - 16, step = c.width / Math.max(values.length, 1);
    var label = values.length ? "max " + format(max) : "nothing yet";
    c.ctx.fillStyle = colour;
    values.forEach(function (v, i) {
      var h = max > 0 ? (v / max) * plot : 0;
      c.ctx.fillRect(i * step + 1, c.height - h, Math.max(step - 2, 1), h);
    });
    c.ctx.fillStyle = "#5b6474";
    c.ctx.fillText(label, 2, 11);
    canvas.setAttribute("aria-label", canvas.getAttribute("data-title") + ": " + label);
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (stats) {
        if (!stats) { return; }
        setCounts(stats);
        bars(document.getElementById("ingest-chart"), stats.ingest_per_second, "#2f5bd3", perSecond);
        bars(document.getElementById("lateness-chart"), stats.lateness_seconds, "#9a6b00", duration);
      })
      .catch(function () { /* the next poll tries again */ });
  }

  refresh();
  window.setInterval(refresh, 2000);
})();
