"""State-changing actions: POST only, CSRF-checked by csrf.py. Forms get a redirect back with the
outcome flashed; script clients asking for JSON get {"ok", "message"}."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from . import access
from .auth import safe_next
from .control import ControlCallError

bp = Blueprint("actions", __name__)

# Far above any real pool; stops a typo from asking the supervisor for a million processes.
MAX_SCALE = 1024


def _finish(name: str, verb: str, result: Any) -> ResponseReturnValue:
    if isinstance(result, dict):
        ok, message = bool(result.get("ok")), str(result.get("message") or "")
    else:  # a supervisor that returns nothing useful still did not raise
        ok, message = True, ""
    message = message or (f"{verb} {name}: done." if ok else f"{verb} {name}: refused.")
    if access.wants_json():
        return jsonify(ok=ok, message=message), 200 if ok else 409
    flash(message, "ok" if ok else "error")
    return redirect(safe_next(request.form.get("next"), url_for("pages.service", name=name)))


def _run(name: str, verb: str, method: str, *args: Any) -> ResponseReturnValue:
    result = access.call(f"{verb} {name!r}", method, name, *args)
    return _finish(name, verb, result)


@bp.route("/services/<name>/start", methods=["POST"])
def start(name: str) -> ResponseReturnValue:
    return _run(name, "Start", "start")


@bp.route("/services/<name>/restart", methods=["POST"])
def restart(name: str) -> ResponseReturnValue:
    return _run(name, "Restart", "restart")


@bp.route("/services/<name>/stop", methods=["POST"])
def stop(name: str) -> ResponseReturnValue:
    if request.form.get("confirm") != "yes":
        if access.wants_json():
            raise ControlCallError(400, f"Stopping {name!r} needs confirmation: send confirm=yes.")
        # The confirmation step: the stop buttons lead here, and only this page's form stops.
        svc = access.find_service(access.call("Reading service status", "status"), name)
        return render_template("confirm_stop.html", svc=svc)
    return _run(name, "Stop", "stop")


@bp.route("/services/<name>/scale", methods=["POST"])
def scale(name: str) -> ResponseReturnValue:
    raw_n, raw_delta = request.form.get("n", "").strip(), request.form.get("delta", "").strip()
    if bool(raw_n) == bool(raw_delta):
        raise ControlCallError(400, "Scale needs exactly one of n (the worker count to run) or "
                                    "delta (e.g. 1 or -1).")
    try:
        number = int(raw_n or raw_delta)
    except ValueError:
        raise ControlCallError(400, f"{'n' if raw_n else 'delta'} must be a whole number "
                                    f"(got {raw_n or raw_delta!r}).") from None
    if raw_delta:
        svc = access.find_service(access.call("Reading service status", "status"), name)
        try:
            number += int(svc.get("current") or 0)
        except (TypeError, ValueError):
            raise ControlCallError(502, f"The supervisor reported no worker count for {name!r}.") from None
    if not 0 <= number <= MAX_SCALE:
        raise ControlCallError(400, f"Cannot scale {name!r} to {number} workers: the count must be "
                                    f"between 0 and {MAX_SCALE}.")
    return _run(name, f"Scale to {number}:", "scale", number)


@bp.route("/services/<name>/workers/<worker_id>/restart", methods=["POST"])
def restart_worker(name: str, worker_id: str) -> ResponseReturnValue:
    svc = access.find_service(access.call("Reading service status", "status"), name)
    wid = access.find_worker(svc, worker_id)
    result = access.call(f"Restart worker {worker_id} of {name!r}", "restart_worker", name, wid)
    return _finish(name, f"Restart worker {worker_id} of", result)
