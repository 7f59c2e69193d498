"""When to restart a crashed worker, and when to give up: exponential back-off and crash-loop
detection, as a small pure object driven by the caller's clock.

A crash doubles the delay before the next start (restart_backoff_initial, capped at
restart_backoff_max); a quiet crash_loop_window resets the doubling. crash_loop_restarts
crashes inside one crash_loop_window is a crash loop: the service is marked failed, and started
again after crash_loop_backoff (a database that was down for ten minutes should not need a
person to notice) -- or never, when that is 0.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class RestartPolicy:
    initial: float
    maximum: float
    loop_restarts: int
    loop_window: float
    loop_backoff: float = 0.0
    crashes: deque[float] = field(default_factory=deque)
    consecutive: int = 0

    @classmethod
    def from_service(cls, svc: Any) -> "RestartPolicy":
        return cls(svc.restart_backoff_initial, svc.restart_backoff_max, svc.crash_loop_restarts,
                   svc.crash_loop_window, svc.crash_loop_backoff)

    def retry_after_loop(self, now: float) -> Optional[float]:
        """When a service failed by a crash loop at `now` is started again (None: never)."""
        return now + self.loop_backoff if self.loop_backoff > 0 else None

    def record_crash(self, now: float) -> Optional[float]:
        """Note a crash; returns the delay before the next start, or None for a crash loop."""
        if self.crashes and now - self.crashes[-1] > self.loop_window:
            self.consecutive = 0
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.loop_window:
            self.crashes.popleft()
        if len(self.crashes) >= self.loop_restarts:
            return None
        self.consecutive += 1
        delay: float = min(self.initial * 2 ** (self.consecutive - 1), self.maximum)
        return delay

    def reset(self) -> None:
        self.crashes.clear()
        self.consecutive = 0

    def update_settings(self, svc: Any) -> None:
        self.initial, self.maximum = svc.restart_backoff_initial, svc.restart_backoff_max
        self.loop_restarts, self.loop_window = svc.crash_loop_restarts, svc.crash_loop_window
        self.loop_backoff = svc.crash_loop_backoff
