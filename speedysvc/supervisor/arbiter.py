"""The arbiter: owns every service pool of one supervisor and runs its main loop.

One thread (the process's main thread) does all supervision, in the manner of gunicorn's
arbiter: signal handlers only record the signal and wake the loop through a pipe; control API
calls arrive from the control service's threads as commands (speedysvc.supervisor.commands)
on a queue and are carried out by the loop, which also ticks every pool. Only this thread
starts processes, so PR_SET_PDEATHSIG binds every worker to the supervisor's life.

Signals: TERM and the first INT stop gracefully (services in reverse file order, each worker
finishing its call within graceful_timeout); a second INT stops at once (KILL). HUP re-reads
the .ini file and touches only what changed (reload_planner). TTIN / TTOU add / remove one
worker in every running service (within min_proc_num..max_proc_num).

What else a running supervisor holds (state file, logs, metrics, control service) is in
runtime.py; the web monitor's process in web_monitor_process.py.
"""
from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from typing import Any, Callable, Optional

from ..exit_codes import EXIT_BOOT_FAILURE, EXIT_OK
from ..monitoring.log_store import LogReader
from ..monitoring.metrics_store import MetricsStore
from ..naming import CONTROL_SERVICE_NAME
from . import commands
from . import service_pool as sp_mod
from .command_queue import CommandQueue, ControlUnavailable
from .config import Config, ServiceConfig
from .control_service import ControlService, UnknownService
from .engines import Engines
from .pool_interface import ServiceState, SupervisedPool
from .runtime import SUPERVISOR_LOG, BootError, SupervisorRuntime
from .service_order import Boot, ServiceOrder
from .state_file import AlreadyRunning
from .system import System
from .reloader import Reloader
from .web_monitor_process import WebMonitorProcess

__all__ = ["Arbiter", "run_supervisor", "SUPERVISOR_LOG", "BootError", "ControlUnavailable"]

log = logging.getLogger("speedysvc.supervisor")

COMMAND_TIMEOUT_S = 30.0
MAX_SLEEP_S = 1.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                   signal.SIGCHLD)


class Arbiter:
    def __init__(self, config: Config, *, system: Optional[System] = None,
                 pool_factory: Optional[Callable[..., Any]] = None):
        self.config = config
        self.scope = config.supervisor.scope
        self.system = system or System()
        self.engines = Engines(self.scope, self.system, pool_factory or sp_mod.default_pool_factory)
        self.runtime = SupervisorRuntime(config, self.system)
        self.pools: dict[str, SupervisedPool] = {}   # by section name, in file order
        self.started_at = time.time()
        self.phase = "booting"        # booting, running, stopping, killed
        self.exit_code = EXIT_OK
        self.web: Optional[WebMonitorProcess] = None
        self._signals: list[int] = []
        self._commands = CommandQueue(wake=self._wake)
        self._wake_r = self._wake_w = -1
        self.order = ServiceOrder()
        self.reloader = Reloader(self)

    # -- what commands use (some from control API threads) ----------------------------------
    @property
    def collector(self) -> Any:
        return self.runtime.collector

    def lookup(self, name: str) -> SupervisedPool:
        pools = dict(self.pools)
        if name in pools:
            return pools[name]
        for sp in pools.values():
            if sp.name == name:
                return sp
        known = ", ".join(sp.name for sp in pools.values()) or "none"
        raise UnknownService(f"no service named {name!r} in this supervisor (services: {known})")

    def service_name(self, name: str) -> str:
        return self.lookup(name).name

    def log_reader(self, name: str) -> LogReader:
        return LogReader(*self.lookup(name).log_location())

    def metrics_store_for(self, name: str) -> MetricsStore:
        self.lookup(name)
        return self.runtime.metrics

    def call(self, command: str, *args: Any, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """Carry out a registered command and return its result; those that touch the pools
        run on the main loop (this is called from the control API's threads)."""
        if not commands.COMMANDS[command].on_loop:
            return commands.run(self, command, args)
        return self._commands.submit(command, args, timeout)

    # -- life --------------------------------------------------------------------------------
    def run(self) -> int:
        """Boot, supervise until stopped, tear down. Returns the process exit code."""
        try:
            self._setup()
        except (BootError, AlreadyRunning, OSError) as exc:
            log.error("cannot start: %s", exc)
            self._teardown()
            return EXIT_BOOT_FAILURE
        try:
            self._loop()
        except BaseException:
            log.exception("supervisor main loop failed; stopping every service now")
            self.exit_code = EXIT_BOOT_FAILURE
            self._kill_everything()
        finally:
            self._teardown()
        return self.exit_code

    def _setup(self) -> None:
        self.config = self.runtime.open()
        for svc in self.config.services:
            self.pools[svc.name] = self.make_pool(svc)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._install_signals()
        self.runtime.start_control(ControlService(self))
        self.web = WebMonitorProcess(self.scope, self.system, self.runtime.capture, SUPERVISOR_LOG,
                                     on_url=self._wake)
        self.web.configure(self.config.web_monitor)
        self._write_state()
        self.order.begin_boot([s.name for s in self.config.services if s.enabled])

    def make_pool(self, svc: ServiceConfig) -> SupervisedPool:
        return self.engines.make_pool(svc, self.config, self.runtime.capture)

    def _web(self) -> WebMonitorProcess:
        if self.web is None:
            raise RuntimeError("the supervisor is not set up")
        return self.web

    def _served_names(self) -> list[str]:
        """What the state file lists, so clients without a scope in their address find us."""
        return sorted({CONTROL_SERVICE_NAME, *(sp.name for sp in self.pools.values())})

    def _write_state(self) -> None:
        self.runtime.write_state(self.config, self._served_names(), self.started_at,
                                 self.web.url if self.web else None)

    def _teardown(self) -> None:
        self._commands.close()
        self._kill_everything()
        if self.web is not None:
            self.web.stop()
        self.engines.stop()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        for sig in HANDLED_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, signal.SIG_DFL)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self.runtime.close(self.exit_code)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wait(self._timeout())
            self._handle_signals()
            if self.phase == "killed":
                return
            self._commands.run_all(lambda command, args: commands.run(self, command, args))
            for sp in list(self.pools.values()):
                try:
                    sp.tick()
                except Exception as exc:  # noqa: BLE001 - one service's trouble must not stop the others
                    log.exception("supervising %s failed", sp.name)
                    sp.supervision_error(exc)
            self._advance_boot()
            self.reloader.add_replacements()
            self.runtime.collect_metrics(self.pools.values())
            self.runtime.sweep_dead_clients()
            web = self._web()
            web.tick(stopping=self.phase == "stopping")
            if self.runtime.state_differs(self._served_names(), web.url):
                self._write_state()
            if self.phase == "stopping" and self.order.advance_stop(self.pools):
                return

    def _timeout(self) -> float:
        now = self.system.monotonic()
        times = [now + MAX_SLEEP_S, *(sp.next_wakeup() for sp in self.pools.values()),
                 *self.runtime.next_wakeups()]
        if self.order.booting or self.phase == "stopping":
            times.append(now + sp_mod.POLL_WHILE_CHANGING_S)
        web_at = self.web.next_wakeup() if self.web is not None else None
        if web_at is not None:
            times.append(web_at)
        return max(0.0, min(times) - now)

    def _wait(self, timeout: float) -> None:
        if self._signals or self._commands.waiting():
            timeout = 0
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # -- signals -----------------------------------------------------------------------------
    def _install_signals(self) -> None:
        def record(signum: int, _frame: Any) -> None:
            self._signals.append(signum)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, record)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _handle_signals(self) -> None:
        signals, self._signals = self._signals, []
        for sig in signals:
            name = signal.Signals(sig).name
            if sig == signal.SIGINT and self.phase == "stopping":
                log.warning("second SIGINT: stopping every service now")
                self._kill_everything()
                return
            if sig in (signal.SIGTERM, signal.SIGINT) and self.phase != "stopping":
                log.info("%s: stopping gracefully (SIGINT again to stop at once)", name)
                self.begin_stop()
            elif sig == signal.SIGHUP:
                log.info("SIGHUP: reloading %s", self.config.path)
                self.reload()
            elif sig in (signal.SIGTTIN, signal.SIGTTOU):
                for sp in self.pools.values():
                    if sp.status == ServiceState.RUNNING:
                        sp.scale_by(1 if sig == signal.SIGTTIN else -1, name)

    # -- boot and stop order (service_order) ---------------------------------------------------
    def _advance_boot(self) -> None:
        if self.phase != "booting":
            return
        outcome = self.order.advance_boot(self.pools)
        if outcome == Boot.FAILED:
            self.exit_code = EXIT_BOOT_FAILURE
            self.begin_stop()
        elif outcome == Boot.DONE:
            self.phase = "running"
            log.info("all services started")

    def begin_stop(self) -> None:
        self.phase = "stopping"
        self.order.begin_stop(self.pools)

    def _kill_everything(self) -> None:
        self.phase = "killed"
        for sp in self.pools.values():
            with contextlib.suppress(Exception):
                sp.kill_all()

    # -- reload ------------------------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Re-read the .ini file and apply what changed (SIGHUP, and the reload command)."""
        return self.reloader.reload()


def run_supervisor(config: Config) -> int:
    """Run a supervisor for `config` in this process until it is stopped; returns the exit code."""
    return Arbiter(config).run()
