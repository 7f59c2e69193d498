"""Users, sessions and the failed-login limiter used by the engine's control interface."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from .errors import LoginFailed, LoginRateLimited, NotLoggedIn
from .passwords import burn_time, is_legacy_hash, verify_password

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginPolicy:
    """How failed logins are throttled and how long sessions live."""

    max_failures: int = 5          # failures allowed within `window_s` before locking out
    window_s: float = 60.0
    lockout_s: float = 30.0        # doubles on each further lockout, up to `max_lockout_s`
    max_lockout_s: float = 900.0
    session_idle_s: float = 12 * 3600.0


class FailedLoginLimiter:
    """Locks a username out after repeated failures, with growing lockouts."""

    def __init__(self, policy: LoginPolicy, clock: Callable[[], float] = time.monotonic):
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lockouts: dict[str, int] = {}

    def check(self, username: str) -> None:
        with self._lock:
            remaining = self._locked_until.get(username, 0.0) - self._clock()
        if remaining > 0:
            raise LoginRateLimited(
                f"too many failed logins for {username!r}; try again in {remaining:.0f} s")

    def record_failure(self, username: str) -> None:
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(username, []) if now - t < self._policy.window_s]
            recent.append(now)
            self._failures[username] = recent
            if len(recent) >= self._policy.max_failures:
                count = self._lockouts.get(username, 0)
                self._lockouts[username] = count + 1
                duration = min(self._policy.lockout_s * 2 ** count, self._policy.max_lockout_s)
                self._locked_until[username] = now + duration
                self._failures[username] = []
                log.warning("locking out %r for %.0f s after %d failed logins", username,
                            duration, self._policy.max_failures)

    def record_success(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)
            self._lockouts.pop(username, None)


class Authenticator:
    """Checks credentials against configured hashes and keeps the logged-in sessions."""

    def __init__(self, users: Mapping[str, str], policy: LoginPolicy = LoginPolicy(),
                 clock: Callable[[], float] = time.monotonic):
        self._users = dict(users)
        self._policy = policy
        self._clock = clock
        self._limiter = FailedLoginLimiter(policy, clock)
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, float]] = {}
        for username, entry in self._users.items():
            if is_legacy_hash(entry):
                log.warning("user %r has an unsalted SHA-256 password entry (AIMM format); "
                            "replace it with the output of: python -m aimm_services.passwords",
                            username)

    def login(self, username: str, password: str) -> str:
        """A new session token, or LoginFailed / LoginRateLimited."""
        self._limiter.check(username)
        entry = self._users.get(username)
        if entry is None:
            burn_time(password)   # unknown users cost as much as known ones
            ok = False
        else:
            ok = verify_password(password, entry)
        if not ok:
            self._limiter.record_failure(username)
            raise LoginFailed("wrong username or password")
        self._limiter.record_success(username)
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
