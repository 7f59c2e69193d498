"""DNS-rebinding guard for a monitor that runs open on loopback.

Without a password, the only thing keeping other web sites out is the browser's same-origin
rule, and DNS rebinding defeats it: evil.example is made to resolve to 127.0.0.1, and its page
then reads ours (CSRF token included) as "same origin". Such requests still carry
`Host: evil.example`, so an open monitor answers only to loopback host names."""
from __future__ import annotations

from flask import Flask, abort, request

from .settings import is_loopback

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:5155
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_host() -> None:
    name = _host_name(request.host)
    if name in _LOOPBACK_NAMES or name.endswith(".localhost") or is_loopback(name):
        return
    abort(400, description=f"This monitor runs without a password and only answers requests "
                           f"addressed to localhost or 127.0.0.1, not {request.host!r}. To reach "
                           f"it by another name, configure a password (python -m "
                           f"web_monitor.passwords).")


def init_host_guard(app: Flask, open_access: bool) -> None:
    """Install the guard when the monitor has no password (with one, login protects it)."""
    if open_access:
        app.before_request(_check_host)
