"""Results of asynchronous commands (PENDING_WITH_NOTIFICATION), kept by nonce so a
peer that missed the COMMAND_RESULT event, or subscribed late, can still fetch it."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional

PENDING = "pending"
COMPLETE = "complete"
UNKNOWN = "unknown"


@dataclass
class _Entry:
    command: int
    state: str
    response: Optional[Any]
    expires_at: float


class CommandResultStore:
    def __init__(
        self,
        retention: float,
        pending_timeout: float,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retention = retention
        self._pending_timeout = pending_timeout
        self._max_entries = max_entries
        self._clock = clock
        self._entries: "OrderedDict[int, _Entry]" = OrderedDict()
        self._lock = threading.Lock()

    def mark_pending(self, nonce: int, command: int) -> None:
        with self._lock:
            self._prune()
            existing = self._entries.get(nonce)
            # The handler may have published its result before returning PENDING_WITH_NOTIFICATION.
            if existing is not None and existing.state == COMPLETE and existing.command == command:
                return
            self._put(nonce, _Entry(command, PENDING, None, self._clock() + self._pending_timeout))

    def complete(self, nonce: int, command: int, response: Any) -> None:
        """`response` is the JSON-compatible COMMAND_RESULT payload."""
        with self._lock:
            self._prune()
            self._put(nonce, _Entry(command, COMPLETE, response, self._clock() + self._retention))

    def lookup(self, nonce: int) -> dict:
        """`{nonce, state: pending|complete|unknown, command, response}`."""
        with self._lock:
            self._prune()
            entry = self._entries.get(nonce)
            if entry is None:
                return {"nonce": nonce, "state": UNKNOWN, "command": None, "response": None}
            return {"nonce": nonce, "state": entry.state, "command": entry.command, "response": entry.response}

    def _put(self, nonce: int, entry: _Entry) -> None:
        self._entries.pop(nonce, None)
        self._entries[nonce] = entry
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _prune(self) -> None:
        now = self._clock()
        expired = [nonce for nonce, entry in self._entries.items() if entry.expires_at <= now]
        for nonce in expired:
            del self._entries[nonce]
