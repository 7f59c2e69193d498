"""The Flask application factory."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from . import access, actions, api, pages, probes, static_lib
from .auth import init_auth
from .control import Control, ControlCallError
from .csrf import init_csrf
from .formatting import FILTERS
from .host_guard import init_host_guard
from .settings import MonitorSettings

# Plotly sets inline styles on its SVG, hence 'unsafe-inline' for styles only; scripts are ours
# and plotly's, both served from this origin.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'")


def create_app(control: Control, *, host: str, password_hash: str | None = None,
               secret_key: str | bytes | None = None) -> Flask:
    """Build the monitor for `control` (see control.Control). `host` is where it will listen:
    off-loopback it refuses to build without `password_hash` (MonitorConfigError)."""
    MonitorSettings(host=host, port=0, password_hash=password_hash).check()
    app = Flask(__name__)
    # A random key means sessions end when the monitor restarts; configure one to keep them.
    key = secret_key or secrets.token_bytes(32)
    key_bytes = key.encode() if isinstance(key, str) else key
    app.config.update(
        SECRET_KEY=key_bytes,
        # Cookies ignore the port: a name of its own keeps two monitors on one host apart.
        SESSION_COOKIE_NAME="speedysvc_monitor_" + hashlib.sha256(key_bytes).hexdigest()[:10],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.extensions[access.EXTENSION_KEY] = control
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(
        auth_enabled=password_hash is not None,
        plotly_version=static_lib.plotly_version(),
    )
    # Order matters: the host check, then the login check, then the CSRF check.
    init_host_guard(app, open_access=password_hash is None)
    init_auth(app, password_hash)
    init_csrf(app)
    for blueprint in (pages.bp, api.bp, actions.bp, probes.bp, static_lib.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(ControlCallError, _control_error)
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(_security_headers)
    return app


def _error_response(status: int, title: str, message: str) -> ResponseReturnValue:
    if access.wants_json():
        return jsonify(ok=False, error=message), status
    return render_template("error.html", status=status, title=title, message=message), status


def _control_error(exc: ControlCallError) -> ResponseReturnValue:
    titles = {400: "Bad request", 404: "Not found", 409: "Refused",
              502: "Supervisor error", 503: "Supervisor unreachable"}
    return _error_response(exc.http_status, titles.get(exc.http_status, "Error"), exc.message)


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    message = exc.description or exc.name
    if exc.code == 404:
        message = f"There is no page at {request.path}. Start from the overview."
    response = make_response(_error_response(exc.code or 500, exc.name, message))
    valid_methods = getattr(exc, "valid_methods", None)
    if valid_methods:  # 405 must say which methods are allowed
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype in ("text/html", "application/json"):
        # Live data: never show a stale copy from the browser cache.
        response.headers.setdefault("Cache-Control", "no-store")
    return response
