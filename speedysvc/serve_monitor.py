"""The thread that runs serve()'s ServicePool, as the arbiter's main loop runs the supervisor's.

It is the only thread that touches the pool: PR_SET_PDEATHSIG ties a worker (and the TCP
front) to the thread that spawned it, so that thread must live as long as the pool, and a
ServicePool is not thread-safe. It ticks the pool when the pool asks to be ticked, carries out
the commands of other threads (start, stop, restart_worker, scale) in between -- a command
wakes it at once -- and sweeps the channels of clients that died.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Optional

from . import naming
from .errors import ServiceUnavailable
from .supervisor.command_queue import CommandQueue, ControlUnavailable
from .supervisor.pool_interface import ServiceState
from .supervisor.service_pool import ServicePool

log = logging.getLogger("speedysvc.serve")

MAX_SLEEP_S = 1.0            # the pool's own wake-ups are sooner while anything changes
CLIENT_SWEEP_EVERY_S = 30.0  # channels of clients killed with SIGKILL
COMMAND_TIMEOUT_S = 30.0
JOIN_MARGIN_S = 10.0         # a stop's kill_all waits up to 5 s for the killed processes
CHANGING_POLL_S = 0.01       # while workers start or stop


class ServeMonitor:
    def __init__(self, service_pool: ServicePool):
        self.service_pool = service_pool
        self._wake = threading.Event()
        self._commands = CommandQueue(wake=self._wake.set)
        self._handlers: dict[str, Callable[..., Any]] = {
            "start": self._start_pool, "stop": self._begin_stop,
            "restart_worker": service_pool.restart_worker, "scale": self._scale}
        self._stop_deadline: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name=f"speedysvc-serve-{service_pool.name}",
                                        daemon=True)

    # -- what other threads call --------------------------------------------------------
    def start(self, timeout: float) -> None:
        """Start the thread, and the pool's workers from it; the OSError of a pool that
        cannot open (a port taken, unreadable certificates)."""
        self._thread.start()
        self.submit("start", timeout=timeout)

    def submit(self, command: str, *args: Any, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """Have the thread carry out `command` and return its result (or raise its exception)."""
        try:
            return self._commands.submit(command, args, timeout)
        except ControlUnavailable:
            raise ServiceUnavailable(f"{self.service_pool.name!r} is stopped") from None

    def stop(self, timeout: float) -> None:
        """Stop the workers gracefully, KILL what remains after `timeout`, end the thread."""
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        try:
            self.submit("stop", deadline, timeout=timeout)
        except (ServiceUnavailable, concurrent.futures.TimeoutError):
            pass  # the thread ended meanwhile, or is stuck: the join below is bounded either way
        self._thread.join(max(0.0, deadline - time.monotonic()) + JOIN_MARGIN_S)

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        sp = self.service_pool
        next_sweep = time.monotonic() + CLIENT_SWEEP_EVERY_S
        try:
            while True:
                self._wake.clear()  # before the commands: a command queued later wakes the wait
                self._commands.run_all(lambda command, args: self._handlers[command](*args))
                if self._stop_deadline is not None and self._stopped():
                    return
                try:
                    sp.tick()
                except Exception as exc:  # noqa: BLE001 - counted as a crash, as the arbiter does
                    log.exception("supervising %s failed", sp.name)
                    sp.supervision_error(exc)
                if self._stop_deadline is not None and self._stopped():
                    return  # the tick stopped the last worker: nothing is left to wait for
                if time.monotonic() >= next_sweep:
                    naming.sweep_dead_clients(sp.scope)
                    next_sweep = time.monotonic() + CLIENT_SWEEP_EVERY_S
                wait = min(MAX_SLEEP_S, max(0.0, sp.next_wakeup() - time.monotonic()))
                if sp.status in (ServiceState.STARTING, ServiceState.STOPPING):
                    # serve() blocks its caller until then: look sooner than the supervisor would
                    wait = min(wait, CHANGING_POLL_S)
                self._wake.wait(wait)
        finally:
            self._commands.close()
            if sp.has_workers:  # the thread is ending for a reason of its own: leave nothing
                sp.kill_all()

    def _start_pool(self) -> str:
        message = self.service_pool.start()
        if self.service_pool.start_failure is not None:
            raise self.service_pool.start_failure
        return message

    def _begin_stop(self, deadline: float) -> str:
        self._stop_deadline = deadline
        self.service_pool.begin_shutdown()  # exits from now on are not crashes to answer
        return self.service_pool.stop()

    def _stopped(self) -> bool:
        """Stopping: True once no worker remains, killing them at the deadline."""
        sp = self.service_pool
        if sp.has_workers and time.monotonic() >= (self._stop_deadline or 0.0):
            log.warning("%s did not stop in time; killing its workers", sp.name)
            sp.kill_all()
        return not sp.has_workers

    def _scale(self, n: int) -> str:
        """Serve with `n` workers: serve() pins the count (min_proc_num = max_proc_num), so
        scaling moves both bounds."""
        sp = self.service_pool
        if n < 1:
            raise ValueError(f"a service needs at least 1 worker, not {n}")
        config = dataclasses.replace(sp.config, min_proc_num=n, max_proc_num=n)
        return sp.reconfigure(config, ["min_proc_num", "max_proc_num"])
