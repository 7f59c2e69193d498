"""A thread that calls `beat()` every `interval` seconds on a fixed schedule.

It only encodes and queues a small message, so nothing a command handler does can
delay it."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class HeartbeatTimer:
    def __init__(self, interval: float, beat: Callable[[], None]) -> None:
        self._interval = interval
        self._beat = beat
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-api-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self._stopped.is_set():
            try:
                self._beat()
            except Exception:  # a failed beat must not end the heartbeat
                log.exception("heartbeat failed")
            # Scheduled from the previous deadline, not from "now", so the cadence does not drift.
            next_beat += self._interval
            now = time.monotonic()
            if next_beat < now:  # fell behind (suspended process): skip missed beats
                next_beat = now + self._interval
            self._stopped.wait(next_beat - now)
