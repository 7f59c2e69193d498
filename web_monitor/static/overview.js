// Overview: refreshes the service table every 2 s and the memory sparklines every 10 s.
"use strict";
(function () {
  const table = document.getElementById("services");
  const rows = new Map();
  table.querySelectorAll("tr[data-service]").forEach(function (tr) { rows.set(tr.dataset.service, tr); });

  async function refreshStatus() {
    const data = await Monitor.getJSON(table.dataset.statusUrl);
    const names = data.services.map(function (s) { return s.name; });
    // A reload (HUP) added or removed services: redraw the whole page rather than patch rows.
    if (names.length !== rows.size || names.some(function (n) { return !rows.has(n); })) {
      window.location.reload();
      return;
    }
    data.services.forEach(function (svc) {
      Monitor.setCells(rows.get(svc.name), svc.cells, svc.status_class);
    });
  }

  async function refreshSparklines() {
    const data = await Monitor.getJSON(table.dataset.sparklinesUrl);
    table.querySelectorAll("[data-sparkline]").forEach(function (div) {
      const figure = data.figures[div.dataset.sparkline];
      if (figure) { Monitor.plot(div, figure, {staticPlot: true, responsive: false}); }
    });
  }

  Monitor.poll("status", refreshStatus, 2000);
  // plotly.js is loaded with defer; wait for it before the first sparkline.
  window.addEventListener("load", function () { Monitor.poll("sparklines", refreshSparklines, 10000); });
})();
