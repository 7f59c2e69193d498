"""Password login. Active when a password hash is configured (always the case off-loopback, see
settings.MonitorSettings.check). Browsers log in with a form and get a session; scripts and
Prometheus may send the same password with HTTP Basic auth instead (the user name is ignored)."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, current_app, jsonify, redirect, render_template,
                   request, session, url_for)
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash

from .csrf import rotate_token

bp = Blueprint("auth", __name__)

SESSION_KEY = "authenticated"
# Endpoints anyone may fetch: the login form itself and static files (no data in them).
_PUBLIC_ENDPOINTS = frozenset({"auth.login", "static", "static_lib.plotly_js"})
# Machine-facing paths answer 401 instead of redirecting to an HTML form.
_MACHINE_PREFIXES = ("/api/", "/health", "/metrics")


class LoginThrottle:
    """Slows password guessing: after `limit` failures from one address within `window`
    seconds, further attempts from it are refused until the oldest failure ages out."""

    def __init__(self, limit: int = 5, window: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:  # forget addresses with nothing recent, so the table stays small
            self._failures.pop(address, None)
        return failures

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 if it may try now."""
        now = self.clock()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return 0.0
            return failures[0] + self.window - now

    def failed(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            failures.append(now)
            self._failures[address] = failures

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


def _password_hash() -> str | None:
    password_hash: str | None = current_app.config["MONITOR_PASSWORD_HASH"]
    return password_hash


def _throttle() -> LoginThrottle:
    throttle: LoginThrottle = current_app.extensions["speedysvc_login_throttle"]
    return throttle


def _basic_auth_ok(password_hash: str) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.password:
        return False
    address = request.remote_addr or "?"
    if _throttle().retry_after(address):
        return False
    if check_password_hash(password_hash, auth.password):
        _throttle().succeeded(address)
        return True
    _throttle().failed(address)
    return False


def safe_next(target: str | None, default: str | None = None) -> str:
    """Only same-site paths: a crafted link must not bounce the user to another site."""
    default = default or url_for("pages.overview")
    if not target:
        return default
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
            or "\\" in target):
        return default
    return target


def _require_login() -> ResponseReturnValue | None:
    password_hash = _password_hash()
    if password_hash is None or session.get(SESSION_KEY):
        return None
    if request.endpoint in _PUBLIC_ENDPOINTS:
        return None
    if request.path.startswith(_MACHINE_PREFIXES):
        if _basic_auth_ok(password_hash):
            return None
        response = jsonify(error="Login required: log in at /login or send the monitor password "
                                 "with HTTP Basic auth.")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="speedysvc monitor"'
        return response
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    password_hash = _password_hash()
    if password_hash is None:
        return redirect(url_for("pages.overview"))
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url, error=None)
    address = request.remote_addr or "?"
    wait = _throttle().retry_after(address)
    if wait:
        return render_template("login.html", next_url=next_url,
                               error=f"Too many failed attempts; try again in {int(wait) + 1} s."), 429
    if not check_password_hash(password_hash, request.form.get("password", "")):
        _throttle().failed(address)
        return render_template("login.html", next_url=next_url, error="Wrong password."), 401
    _throttle().succeeded(address)
    # A fresh session at login, so nothing chosen by someone else before login carries over.
    session.clear()
    rotate_token()
    session[SESSION_KEY] = True
    session.permanent = True
    return redirect(next_url)


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("auth.login") if _password_hash() else url_for("pages.overview"))


def init_auth(app: Flask, password_hash: str | None) -> None:
    app.config["MONITOR_PASSWORD_HASH"] = password_hash
    app.extensions["speedysvc_login_throttle"] = LoginThrottle()
    app.before_request(_require_login)
    app.register_blueprint(bp)
