// Shared helpers for the monitor pages: JSON fetching, polling with back-off, cell updates and
// handing server-built plotly figures to Plotly.
"use strict";
window.Monitor = (function () {
  const pollError = document.getElementById("poll-error");
  const live = document.getElementById("live");
  const failures = new Set();

  async function getJSON(url) {
    const response = await fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON: reported below */ }
    if (response.status === 401) { window.location.reload(); }  // session expired: go to login
    if (!response.ok) {
      throw new Error((body && body.error) || ("HTTP " + response.status + " from " + url));
    }
    return body;
  }

  function showState(name, error) {
    if (error) { failures.add(name); } else { failures.delete(name); }
    if (error) {
      pollError.textContent = error.message;
      pollError.hidden = false;
    } else if (failures.size === 0) {
      pollError.hidden = true;
    }
    live.hidden = false;
    live.classList.toggle("stale", failures.size > 0);
    live.textContent = failures.size ? "live · not updating" :
      "live · updated " + new Date().toLocaleTimeString();
  }

  // Runs task now and then again `interval` ms (a number or a function giving one) after it
  // finishes, never overlapping; after failures waits longer, up to 30 s, so a stopped
  // supervisor is not hammered. now() runs it at once (or right after the run in flight).
  function poll(name, task, interval) {
    const base = typeof interval === "function" ? interval : function () { return interval; };
    let failuresInRow = 0;
    let timer = null;
    let again = false;
    async function tick() {
      timer = null;
      again = false;
      try {
        await task();
        showState(name, null);
        failuresInRow = 0;
      } catch (error) {
        showState(name, error);
        failuresInRow += 1;
      }
      const delay = again ? 0 : Math.min(base() * Math.pow(2, failuresInRow), failuresInRow ? 30000 : Infinity);
      timer = setTimeout(tick, delay);
    }
    tick();
    return {
      now() {
        if (timer !== null) { clearTimeout(timer); tick(); } else { again = true; }
      },
    };
  }

  function setCells(root, cells, statusClass) {
    root.querySelectorAll("[data-cell]").forEach(function (el) {
      const key = el.dataset.cell;
      if (!(key in cells)) { return; }
      el.textContent = cells[key];
      if (key === "last_error" || key === "note") { el.hidden = !cells[key]; }
      if (key === "status" && statusClass) { el.className = "badge badge-" + statusClass; }
    });
    if ("status" in cells) {  // offer Start only when not running, Stop only when running
      const status = cells.status;
      root.querySelectorAll('[data-action="start"]').forEach(function (b) {
        b.disabled = status === "running" || status === "starting";
      });
      root.querySelectorAll('[data-action="stop"], [data-action="restart"]').forEach(function (b) {
        b.disabled = status === "stopped" || status === "failed";
      });
    }
  }

  function plot(el, figure, extraConfig) {
    if (!window.Plotly || !figure) { return; }
    const config = Object.assign({displaylogo: false, responsive: true}, extraConfig || {});
    window.Plotly.react(el, figure.data, figure.layout, config);
  }

  function csrfToken() {
    return document.querySelector('meta[name="csrf-token"]').content;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) { node.setAttribute(k, v); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  return {getJSON, poll, setCells, plot, csrfToken, el};
})();
