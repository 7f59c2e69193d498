"""Users, sessions and the failed-login limiter used by the engine's control interface."""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Callable, Mapping

from .errors import LoginFailed, NotLoggedIn
from .login_limiter import FailedLoginLimiter, LoginPolicy
from .passwords import burn_time, is_legacy_hash, verify_digest, verify_password

__all__ = ["Authenticator", "LoginPolicy", "LOCAL_SOURCE"]

# the source of logins through speedysvc (shared memory or its TCP): the engine cannot see
# the caller's address there, so they count as one source
LOCAL_SOURCE = "speedysvc"

log = logging.getLogger(__name__)


class Authenticator:
    """Checks credentials against configured hashes and keeps the logged-in sessions."""

    def __init__(self, users: Mapping[str, str], policy: LoginPolicy = LoginPolicy(),
                 clock: Callable[[], float] = time.time,
                 limiter_path: str | os.PathLike = ":memory:"):
        self._users = dict(users)
        self._policy = policy
        self._clock = clock
        self._limiter = FailedLoginLimiter(policy, limiter_path, clock)
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, float]] = {}
        for username, entry in self._users.items():
            if is_legacy_hash(entry):
                log.warning("user %r has an unsalted SHA-256 password entry (AIMM format); "
                            "replace it with the output of: python -m aimm_services.passwords",
                            username)

    def login(self, username: str, password: str, source: str = LOCAL_SOURCE) -> str:
        """A new session token, or LoginFailed / LoginRateLimited."""
        return self._login(username, password, source, verify_password)

    def login_digest(self, username: str, digest: str, source: str) -> str:
        """Log in with the SHA-256 hex digest of the password (what AIMM's client sends)."""
        return self._login(username, digest, source, verify_digest)

    def close(self) -> None:
        self._limiter.close()

    def _login(self, username: str, secret: str, source: str,
               verify: Callable[[str, str], bool]) -> str:
        if not isinstance(username, str) or not isinstance(secret, str):
            raise LoginFailed("login needs a username and a password (strings)")
        self._limiter.check(source, username)
        entry = self._users.get(username)
        if entry is None:
            burn_time(secret)   # unknown users cost as much as known ones
            ok = False
        else:
            ok = verify(secret, entry)
        if not ok:
            self._limiter.record_failure(source, username)
            raise LoginFailed("wrong username or password")
        self._limiter.record_success(source, username)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (username, self._clock())
        return token

    def logout(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def require(self, token: str | None) -> str:
        """The username of a live session, or NotLoggedIn."""
        now = self._clock()
        with self._lock:
            session = self._sessions.get(token) if isinstance(token, str) else None
            if session is None or now - session[1] > self._policy.session_idle_s:
                if session is not None:
                    del self._sessions[token]
                raise NotLoggedIn("not logged in (or the session expired): call "
                                  "login(username, password) first")
            self._sessions[token] = (session[0], now)
            return session[0]
