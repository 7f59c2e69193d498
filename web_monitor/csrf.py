"""Per-session CSRF tokens. Every state-changing request (any method but GET/HEAD/OPTIONS) must
echo the session's token in the `csrf_token` form field or the `X-CSRF-Token` header; a page
on another site can make the browser send our cookie but cannot read the token."""
from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

SESSION_KEY = "csrf_token"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token() -> str:
    """The current session's token, created on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def rotate_token() -> None:
    """Forget the token, e.g. at login, so a token planted before login is worthless after it."""
    session.pop(SESSION_KEY, None)


def _check_request() -> None:
    if request.method in _SAFE_METHODS:
        return
    expected = session.get(SESSION_KEY)
    sent = request.headers.get(HEADER) or request.form.get(FORM_FIELD) or ""
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(400, description="The form's security token is missing or out of date (CSRF check "
                               "failed). Reload the page and try again.")


def init_csrf(app: Flask) -> None:
    app.before_request(_check_request)
    app.jinja_env.globals["csrf_token"] = csrf_token
