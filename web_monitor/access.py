"""Calling the control API from inside a request: every failure becomes a ControlCallError with
the HTTP status and message the error handlers in app.py show."""
from __future__ import annotations

from typing import Any, Callable

from flask import current_app, request

from .control import Control, ControlCallError, classify

EXTENSION_KEY = "speedysvc_control"


def control() -> Control:
    client: Control = current_app.extensions[EXTENSION_KEY]
    return client


def call(what: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """control.<method>(*args, **kwargs), with failures classified for HTTP."""
    fn: Callable[..., Any] = getattr(control(), method)
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the user, classified
        current_app.logger.warning("control.%s failed: %r", method, exc)
        raise classify(exc, what) from exc


def services(status: dict[str, Any]) -> list[dict[str, Any]]:
    return list(status.get("services") or [])


def find_service(status: dict[str, Any], name: str) -> dict[str, Any]:
    """The named service's status, or a 404 that lists the services that do exist."""
    for svc in services(status):
        if svc.get("name") == name:
            return svc
    known = ", ".join(sorted(str(s.get("name")) for s in services(status))) or "none"
    raise ControlCallError(404, f"Unknown service {name!r}. Services under this supervisor: {known}.")


def find_worker(svc: dict[str, Any], worker_id: str) -> Any:
    """The worker id as the supervisor spells it (int or str), or a 404 listing current workers."""
    for worker in svc.get("workers") or []:
        if str(worker.get("worker_id")) == worker_id:
            return worker.get("worker_id")
    current = ", ".join(str(w.get("worker_id")) for w in svc.get("workers") or []) or "none"
    raise ControlCallError(404, f"Service {svc.get('name')!r} has no worker {worker_id!r}. "
                                f"Current workers: {current}.")


def wants_json() -> bool:
    """API paths and script clients get JSON; browsers submitting forms get HTML."""
    if request.path.startswith(("/api/", "/health")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
