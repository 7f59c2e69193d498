"""The order services start and stop in: one at a time, in file order, each waiting for the
previous to serve (wait_until_completed); stopping in reverse, each finishing before the next.

The arbiter calls `advance_boot()` / `advance_stop()` on every turn of its loop; both only look
at the pools' states and call start() / stop() on them, so a test drives them with fake pools.
"""
from __future__ import annotations

import enum
import logging
from typing import Mapping

from .pool_interface import ServiceState, SupervisedPool

log = logging.getLogger("speedysvc.supervisor")


class Boot(enum.Enum):
    STARTING = "starting"   # a service is still starting (or waits for its turn)
    DONE = "done"           # every enabled service was started
    FAILED = "failed"       # a service later ones wait for could not start


class ServiceOrder:
    def __init__(self) -> None:
        self.boot_queue: list[str] = []     # sections still to start, in file order
        self.boot_started: set[str] = set()
        self.stop_queue: list[str] = []     # sections still to stop, last started first

    def begin_boot(self, sections: list[str]) -> None:
        self.boot_queue = list(sections)

    @property
    def booting(self) -> bool:
        return bool(self.boot_queue)

    def advance_boot(self, pools: Mapping[str, SupervisedPool]) -> Boot:
        while self.boot_queue:
            sp = pools.get(self.boot_queue[0])
            if sp is None:  # removed by a reload meanwhile
                self.boot_queue.pop(0)
                continue
            if sp.section not in self.boot_started:
                self.boot_started.add(sp.section)
                try:
                    sp.start()
                except Exception as exc:  # noqa: BLE001 - reported as the service's failure
                    log.exception("%s could not start", sp.name)
                    sp.fail(f"could not start: {exc}")
            if not sp.config.wait_until_completed or sp.status == ServiceState.RUNNING:
                self.boot_queue.pop(0)
                continue
            if sp.status in (ServiceState.FAILED, ServiceState.STOPPED) and not sp.has_workers:
                log.error("%s failed to start and later services wait for it (wait_until_completed):"
                          " stopping the supervisor. %s", sp.name,
                          sp.status_dict({}, {}).get("last_error") or "")
                return Boot.FAILED
            return Boot.STARTING
        return Boot.DONE

    def begin_stop(self, pools: Mapping[str, SupervisedPool]) -> None:
        self.boot_queue.clear()
        for sp in pools.values():
            sp.begin_shutdown()
        self.stop_queue = list(reversed([n for n, sp in pools.items() if sp.has_workers]))

    def advance_stop(self, pools: Mapping[str, SupervisedPool]) -> bool:
        """Stop services one at a time, last started first; True once all have stopped."""
        while self.stop_queue:
            sp = pools.get(self.stop_queue[0])
            if sp is None or not sp.has_workers:
                self.stop_queue.pop(0)
                continue
            if sp.status != ServiceState.STOPPING:
                sp.stop()
            return False
        return True
