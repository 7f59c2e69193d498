"""Failed-login throttling per source address and per username, kept in SQLite.

Two limits, so one attacker can neither guess one user's password quickly nor keep the real
user out:

- per (source, username): `max_failures` failures within `window_s` lock that pair out for
  `lockout_s`, doubling with each further lockout up to `max_lockout_s`. Only that source is
  locked out of that user; the user still logs in from anywhere else.
- per source: `source_max_failures` failures within `source_window_s`, whatever the
  usernames, lock the whole source out (spraying many usernames from one place), with the
  same doubling.

A correct password resets the pair's failures and its lockout count. Records are kept in a
SQLite file (":memory:" for none), with wall-clock times, so an engine restart does not hand
an attacker a fresh budget.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .errors import LoginRateLimited

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS login_failures (source TEXT NOT NULL, username TEXT NOT NULL,
                                           at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_source ON login_failures (source, at);
CREATE TABLE IF NOT EXISTS login_lockouts (key TEXT PRIMARY KEY, until REAL NOT NULL,
                                           count INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class LoginPolicy:
    """How failed logins are throttled and how long sessions live."""

    max_failures: int = 5          # per (source, username) within `window_s`
    window_s: float = 60.0
    lockout_s: float = 30.0        # doubles on each further lockout, up to `max_lockout_s`
    max_lockout_s: float = 900.0
    source_max_failures: int = 20  # per source, any usernames, within `source_window_s`
    source_window_s: float = 600.0
    source_lockout_s: float = 300.0
    session_idle_s: float = 12 * 3600.0


def _pair_key(source: str, username: str) -> str:
    return f"pair\0{source}\0{username}"


def _source_key(source: str) -> str:
    return f"source\0{source}"


class FailedLoginLimiter:
    """Checks and records login attempts (thread-safe; one writer process per file)."""

    def __init__(self, policy: LoginPolicy, path: str | os.PathLike = ":memory:",
                 clock: Callable[[], float] = time.time):
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.fspath(path), check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def check(self, source: str, username: str) -> None:
        """Raise LoginRateLimited if this source, or this source for this user, is locked."""
        now = self._clock()
        with self._lock:
            rows = self._db.execute(
                "SELECT key, until FROM login_lockouts WHERE key IN (?, ?)",
                (_source_key(source), _pair_key(source, username))).fetchall()
        for key, until in rows:
            if until > now:
                what = (f"from {source}" if key.startswith("source")
                        else f"for {username!r} from {source}")
                raise LoginRateLimited(f"too many failed logins {what}; try again in "
                                       f"{until - now:.0f} s")

    def record_failure(self, source: str, username: str) -> None:
        policy, now = self._policy, self._clock()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            horizon = now - max(policy.window_s, policy.source_window_s)
            self._db.execute("DELETE FROM login_failures WHERE at < ?", (horizon,))
            self._db.execute("INSERT INTO login_failures VALUES (?, ?, ?)",
                             (source, username, now))
            (pair_count,) = self._db.execute(
                "SELECT COUNT(*) FROM login_failures WHERE source = ? AND username = ? "
                "AND at > ?", (source, username, now - policy.window_s)).fetchone()
            if pair_count >= policy.max_failures:
                self._lock_out(_pair_key(source, username), now, policy.lockout_s,
                               f"{username!r} from {source}")
                self._db.execute("DELETE FROM login_failures WHERE source = ? AND username = ?",
                                 (source, username))
            (source_count,) = self._db.execute(
                "SELECT COUNT(*) FROM login_failures WHERE source = ? AND at > ?",
                (source, now - policy.source_window_s)).fetchone()
            if source_count >= policy.source_max_failures:
                self._lock_out(_source_key(source), now, policy.source_lockout_s,
                               f"every user from {source}")
                self._db.execute("DELETE FROM login_failures WHERE source = ?", (source,))

    def record_success(self, source: str, username: str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM login_failures WHERE source = ? AND username = ?",
                             (source, username))
            self._db.execute("DELETE FROM login_lockouts WHERE key = ?",
                             (_pair_key(source, username),))

    def _lock_out(self, key: str, now: float, base_s: float, what: str) -> None:
        row = self._db.execute("SELECT count FROM login_lockouts WHERE key = ?",
                               (key,)).fetchone()
        count = row[0] if row else 0
        duration = min(base_s * 2 ** count, self._policy.max_lockout_s)
        self._db.execute("INSERT OR REPLACE INTO login_lockouts VALUES (?, ?, ?)",
                         (key, now + duration, count + 1))
        log.warning("locking out %s for %.0f s after repeated failed logins", what, duration)
