"""Endpoints for machines: /health for load balancers and scripts, /metrics for Prometheus."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue

from . import access, prometheus
from .control import ControlCallError

bp = Blueprint("probes", __name__)


@bp.route("/health")
def health() -> ResponseReturnValue:
    """200 when every service is running, 503 otherwise (including an unreachable supervisor)."""
    try:
        status = access.call("Reading service status", "status")
    except ControlCallError as exc:
        return jsonify(ok=False, error=exc.message, services={}, down=[]), 503
    states = {str(svc.get("name")): svc.get("status") for svc in access.services(status)}
    down = sorted(name for name, state in states.items() if state != "running")
    return jsonify(ok=not down, services=states, down=down), 503 if down else 200


@bp.route("/metrics")
def metrics() -> ResponseReturnValue:
    # An unreachable supervisor is itself a metric (speedysvc_supervisor_up 0), not a scrape error.
    try:
        status = access.call("Reading service status", "status")
    except ControlCallError as exc:
        current_app.logger.warning("/metrics: %s", exc.message)
        status = None
    return Response(prometheus.render(status), content_type=prometheus.CONTENT_TYPE)
