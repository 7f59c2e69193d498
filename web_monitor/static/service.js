// Service page: live header and worker table, charts for the chosen window, method table and
// the log tail with follow, search and level filter.
"use strict";
(function () {
  const root = document.getElementById("service");
  const d = root.dataset;
  const E = Monitor.el;
  let currentWindow = new URLSearchParams(window.location.search).get("window") || "5m";

  // ---- header cards and workers -------------------------------------------------------------
  const workersBody = document.querySelector("#workers tbody");

  function workerRow(w) {
    const tr = E("tr", {"data-worker": w.worker_id});
    [["", w.worker_id], ["pid", w.pid], ["", w.state], ["", w.started], ["num", w.rss],
     ["num", w.uss], ["num", w.cpu], ["num", w.calls]].forEach(function ([cls, text]) {
      tr.appendChild(E("td", cls ? {"class": cls} : {}, text));
    });
    const form = E("form", {method: "post", "class": "inline",
                            action: d.workerRestartUrl.replace("WORKER_ID", encodeURIComponent(w.worker_id))});
    form.appendChild(E("input", {type: "hidden", name: "csrf_token", value: Monitor.csrfToken()}));
    form.appendChild(E("input", {type: "hidden", name: "next", value: d.here}));
    form.appendChild(E("button", {type: "submit", "class": "btn btn-small", "data-action": "restart-worker"}, "Restart"));
    const td = E("td");
    td.appendChild(form);
    tr.appendChild(td);
    return tr;
  }

  const scaleDown = document.querySelector('[data-action="scale-down"]');
  const scaleUp = document.querySelector('[data-action="scale-up"]');

  async function refreshService() {
    const svc = await Monitor.getJSON(d.serviceUrl);
    Monitor.setCells(root, svc.cells, svc.status_class);
    // The autoscaler moves the count too; keep the buttons within the pool's bounds.
    const raw = svc.raw;
    scaleDown.disabled = raw.current <= raw.min_proc_num;
    scaleUp.disabled = raw.current >= raw.max_proc_num;
    workersBody.replaceChildren.apply(workersBody, svc.workers.length ? svc.workers.map(workerRow) :
      [(function () { const tr = E("tr", {"class": "empty-row"}); tr.appendChild(E("td", {colspan: "9", "class": "empty"}, "No workers running.")); return tr; })()]);
  }

  // ---- charts and methods -------------------------------------------------------------------
  const methodsBody = document.querySelector("#methods tbody");
  const points = document.getElementById("points");

  function fmt(value, digits) {
    return (value === null || value === undefined) ? "–" : Number(value).toFixed(digits);
  }

  async function refreshCharts() {
    const url = d.chartsUrl + "?window=" + encodeURIComponent(currentWindow);
    const data = await Monitor.getJSON(url);
    if (data.window !== currentWindow) { return; }  // the user switched while we waited
    document.querySelectorAll("[data-chart]").forEach(function (div) {
      Monitor.plot(div, data.figures[div.dataset.chart]);
    });
    points.textContent = data.points + " samples · " + data.window_label;
    const rows = data.methods.map(function (m) {
      const tr = E("tr");
      tr.appendChild(E("td", {}, m.name));
      tr.appendChild(E("td", {"class": "num"}, m.count === undefined ? "–" : Number(m.count).toLocaleString()));
      tr.appendChild(E("td", {"class": "num"}, m.errors === undefined ? "–" : Number(m.errors).toLocaleString()));
      tr.appendChild(E("td", {"class": "num"}, fmt(m.p50_ms, 3)));
      tr.appendChild(E("td", {"class": "num"}, fmt(m.p99_ms, 3)));
      return tr;
    });
    if (!rows.length) {
      const tr = E("tr", {"class": "empty-row"});
      tr.appendChild(E("td", {colspan: "5", "class": "empty"}, "No calls in this window."));
      rows.push(tr);
    }
    methodsBody.replaceChildren.apply(methodsBody, rows);
  }

  // ---- log tail -----------------------------------------------------------------------------
  const logBox = document.getElementById("log");
  const follow = document.getElementById("log-follow");
  const textInput = document.getElementById("log-text");
  const levelSelect = document.getElementById("log-level");
  const MAX_ENTRIES = 2000;
  let cursor = null;
  let generation = 0;  // bumps when the filters change, so late answers for old filters are dropped

  function logQuery(extra) {
    const q = new URLSearchParams(extra);
    if (textInput.value.trim()) { q.set("text", textInput.value.trim()); }
    if (levelSelect.value) { q.set("level", levelSelect.value); }
    return d.logsUrl + "?" + q.toString();
  }

  function entryNode(e) {
    const stream = ["stdout", "stderr", "log"].includes(e.stream) ? e.stream : "log";
    const div = E("div", {"class": "entry " + stream});
    div.appendChild(E("span", {"class": "t"}, e.time));
    const s = E("span");
    s.appendChild(E("span", {"class": "stream stream-" + stream}, stream));
    div.appendChild(s);
    div.appendChild(E("span", {"class": "level-" + String(e.level || "").toLowerCase()}, e.level || ""));
    div.appendChild(E("span", {"class": "w", title: "pid " + e.pid}, (e.worker_id == null ? "supervisor" : "w" + e.worker_id) + " " + (e.pid ?? "")));
    div.appendChild(E("span", {"class": "msg"}, e.message));
    return div;
  }

  function append(entries) {
    const nearBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
    const placeholder = logBox.querySelector(".empty");
    if (placeholder && entries.length) { placeholder.remove(); }
    entries.forEach(function (e) { logBox.appendChild(entryNode(e)); });
    while (logBox.childElementCount > MAX_ENTRIES) { logBox.firstElementChild.remove(); }
    if (follow.checked && (nearBottom || entries.length === logBox.childElementCount)) {
      logBox.scrollTop = logBox.scrollHeight;
    }
  }

  async function refreshLogs() {
    if (!follow.checked && cursor !== null) { return; }
    const mine = generation;
    const data = await Monitor.getJSON(logQuery(cursor === null ? {lines: 200} : {after: cursor}));
    // Filters changed, or the user paused while we waited: drop the answer (the cursor stays,
    // so nothing is lost when following resumes).
    if (mine !== generation || (!follow.checked && cursor !== null)) { return; }
    if (cursor === null) {
      logBox.replaceChildren();
      if (!data.entries.length) { logBox.appendChild(E("div", {"class": "empty"}, "No matching log lines yet.")); }
    }
    append(data.entries);
    cursor = data.cursor;
  }

  // ---- wiring -------------------------------------------------------------------------------
  Monitor.poll("service", refreshService, 2000);
  let logPoller = Monitor.poll("logs", refreshLogs, 1000);
  let chartPoller = null;
  window.addEventListener("load", function () {
    // Long windows change slowly; refreshing them often would only cost the supervisor.
    chartPoller = Monitor.poll("charts", refreshCharts, function () {
      return currentWindow === "5m" ? 5000 : 30000;
    });
  });

  document.querySelectorAll("#windows a").forEach(function (a) {
    a.addEventListener("click", function (event) {
      event.preventDefault();
      currentWindow = a.dataset.window;
      document.querySelectorAll("#windows a").forEach(function (x) { x.classList.toggle("active", x === a); });
      history.replaceState(null, "", "?window=" + encodeURIComponent(currentWindow));
      if (chartPoller) { chartPoller.now(); }
    });
  });

  let debounce = null;
  function filtersChanged() {
    clearTimeout(debounce);
    debounce = setTimeout(function () {
      generation += 1;
      cursor = null;
      logPoller.now();
    }, 300);
  }
  textInput.addEventListener("input", filtersChanged);
  levelSelect.addEventListener("change", filtersChanged);
  follow.addEventListener("change", function () { if (follow.checked) { logPoller.now(); } });
  document.getElementById("log-filters").addEventListener("submit", function (e) { e.preventDefault(); });
})();
