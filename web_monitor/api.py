"""JSON endpoints polled by the pages' scripts (and usable by scripts of your own)."""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from . import access
from .charts import (SPARKLINE_SECONDS, WINDOWS, figure_json, point_count, service_figures,
                     sparkline, window_bounds)
from .control import ControlCallError
from .formatting import format_clock
from .pages import LOG_LEVELS
from .presenters import service_cells, status_class, worker_cells

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_LOG_LINES = 5000
MAX_SEARCH_LENGTH = 200


def _bad(message: str) -> ControlCallError:
    return ControlCallError(400, message)


def _int_arg(name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be a whole number (got {raw!r}).") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _bad(f"{name} must be {bounds} (got {value}).")
    return value


def _service_json(svc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": svc.get("name"),
        "status": svc.get("status"),
        "status_class": status_class(svc.get("status")),
        "cells": service_cells(svc),
        "workers": [{**worker_cells(w), "raw": w} for w in svc.get("workers") or []],
        "raw": svc,
    }


@bp.route("/status")
def status() -> ResponseReturnValue:
    """Every service with raw numbers and the formatted cells the overview shows."""
    st = access.call("Reading service status", "status")
    return jsonify(supervisor=st.get("supervisor") or {}, time=time.time(),
                   services=[_service_json(svc) for svc in access.services(st)])


@bp.route("/services/<name>")
def service(name: str) -> ResponseReturnValue:
    st = access.call("Reading service status", "status")
    return jsonify(_service_json(access.find_service(st, name)))


@bp.route("/sparklines")
def sparklines() -> ResponseReturnValue:
    """Memory sparklines of every service over the last few minutes."""
    st = access.call("Reading service status", "status")
    since = time.time() - SPARKLINE_SECONDS
    figures = {}
    for svc in access.services(st):
        name = svc.get("name")
        try:
            metrics = access.call(f"Reading metrics of {name!r}", "metrics", name, since=since)
        except ControlCallError as exc:
            if exc.http_status != 404:
                raise
            continue  # removed by a reload between the two calls
        figures[name] = figure_json(sparkline(metrics))
    return jsonify(figures=figures)


@bp.route("/services/<name>/charts")
def charts(name: str) -> ResponseReturnValue:
    """Plotly figures and per-method statistics for one service over the chosen window."""
    window = request.args.get("window", "5m")
    try:
        since, until = window_bounds(window)
    except ValueError as exc:
        raise _bad(f"{exc}.") from None
    svc = access.find_service(access.call("Reading service status", "status"), name)
    live = {str(w["worker_id"]) for w in svc.get("workers", [])}
    metrics = access.call(f"Reading metrics of {name!r}", "metrics", name, since=since, until=until)
    figures = {key: figure_json(fig)
               for key, fig in service_figures(metrics, window, live_workers=live).items()}
    methods = sorted(metrics.get("methods") or [], key=lambda m: str(m.get("name")))
    return jsonify(window=window, window_label=WINDOWS[window][0], points=point_count(metrics),
                   figures=figures, methods=methods)


@bp.route("/services/<name>/logs")
def logs(name: str) -> ResponseReturnValue:
    """Log entries: the last `lines` matching ones, or only those after `after` (a cursor)."""
    lines = _int_arg("lines", 200, 1, MAX_LOG_LINES)
    after = _int_arg("after", None, 0)
    text = request.args.get("text", "").strip() or None
    if text is not None and len(text) > MAX_SEARCH_LENGTH:
        raise _bad(f"text must be at most {MAX_SEARCH_LENGTH} characters.")
    level = request.args.get("level", "").strip().lower() or None
    if level is not None and level not in LOG_LEVELS:
        raise _bad(f"level must be one of {', '.join(LOG_LEVELS)} (got {level!r}).")
    result = access.call(f"Reading logs of {name!r}", "logs", name, lines=lines, text=text,
                         level=level, after=after)
    entries = [{**entry, "time": format_clock(entry.get("ts"))} for entry in result.get("entries") or []]
    return jsonify(entries=entries, cursor=result.get("cursor", after))
