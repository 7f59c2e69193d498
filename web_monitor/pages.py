"""HTML pages: the overview, one service, and the stop confirmation."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from . import access
from .charts import DEFAULT_WINDOW, WINDOWS
from .control import ControlCallError
from .presenters import scale_bounds, service_cells, status_class, worker_cells

bp = Blueprint("pages", __name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@bp.route("/")
def overview() -> str:
    status = access.call("Reading service status", "status")
    rows = [(svc, service_cells(svc), status_class(svc.get("status")))
            for svc in access.services(status)]
    return render_template("overview.html", supervisor=status.get("supervisor") or {}, rows=rows)


@bp.route("/services/<name>")
def service(name: str) -> str:
    window = request.args.get("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        raise ControlCallError(400, f"window must be one of {', '.join(WINDOWS)} (got {window!r}).")
    status = access.call("Reading service status", "status")
    svc = access.find_service(status, name)
    workers = [worker_cells(w) for w in svc.get("workers") or []]
    return render_template("service.html", svc=svc, cells=service_cells(svc),
                           status_class=status_class(svc.get("status")), workers=workers,
                           bounds=scale_bounds(svc), windows=WINDOWS, window=window,
                           levels=LOG_LEVELS)


@bp.route("/services/<name>/stop", methods=["GET"])
def confirm_stop(name: str) -> str:
    status = access.call("Reading service status", "status")
    svc = access.find_service(status, name)
    return render_template("confirm_stop.html", svc=svc)
