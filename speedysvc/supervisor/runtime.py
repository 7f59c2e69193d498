"""What a running supervisor holds besides its pools, set up before the loop and torn down
after it: the scope's lock and state file, the sweep of what dead runs left, log capture and
the supervisor's own log, the metrics store and collector, the control service; and the
housekeeping the loop asks for (metrics sampling, sweeping dead clients' shared memory).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from typing import Any, Iterable, Optional, TypeVar

from .. import naming
from ..monitoring.collector import Collector, ServiceSnapshot
from ..monitoring.log_capture import SERVICE_LOGGER, LogCapture, ServiceLogHandler, WriterHandler
from ..monitoring.metrics_store import MetricsStore
from . import log_isolation
from .pool_interface import SupervisedPool
from .state_file import StateFile, find_all, reap_dead_scopes
from .system import System

log = logging.getLogger("speedysvc.supervisor")

SUPERVISOR_LOG = "speedysvc-supervisor"
CONTROL_THREADS = 3


class BootError(Exception):
    """The supervisor could not start (exit code 70)."""


T = TypeVar("T")


def _opened(value: Optional[T]) -> T:
    if value is None:
        raise RuntimeError("the supervisor's runtime is not open")
    return value


class SupervisorRuntime:
    def __init__(self, config: Any, system: System):
        self.config = config
        self.scope: str = config.supervisor.scope
        self.system = system
        self._state: Optional[StateFile] = None
        self._capture: Optional[LogCapture] = None
        self._metrics: Optional[MetricsStore] = None
        self._collector: Optional[Collector] = None
        self.control: Any = None
        self.control_secret: Optional[str] = None
        self.shared_log_dirs: set[str] = set()  # log dirs another running supervisor writes to
        self._stack = contextlib.ExitStack()
        self._log_handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self._next_collect: dict[str, float] = {}
        self._next_client_sweep = 0.0

    # what open() sets up; asking before it is a programming error
    @property
    def state(self) -> StateFile:
        return _opened(self._state)

    @property
    def capture(self) -> LogCapture:
        return _opened(self._capture)

    @property
    def metrics(self) -> MetricsStore:
        return _opened(self._metrics)

    @property
    def collector(self) -> Collector:
        return _opened(self._collector)

    # -- set-up and tear-down ------------------------------------------------------------
    def open(self) -> Any:
        """Lock the scope, sweep, set up logs and metrics; returns the configuration as it
        applies (log directories moved apart from another running supervisor's)."""
        sup = self.config.supervisor
        self._state = StateFile(sup.runtime_dir, self.scope)
        self._state.acquire()
        swept = naming.sweep(self.scope)
        dead_scopes = reap_dead_scopes()
        self.shared_log_dirs = log_isolation.taken_dirs(find_all()[0], self.scope)
        moved = sorted(self.shared_log_dirs & set(log_isolation.dirs_of(self.config)))
        self.config = self.isolate(self.config)
        self._capture = LogCapture()
        self._install_logging()
        if swept:
            log.warning("removed %d shared-memory object(s) left by an earlier run of scope %s",
                        swept, self.scope)
        for shared in moved:
            log.warning("log_dir %s is in use by another running supervisor; this one writes to "
                        "%s", shared, os.path.join(shared, self.scope))
        if dead_scopes:
            log.warning("removed the shared memory of supervisors that died without cleaning up "
                        "(scopes %s)", ", ".join(dead_scopes))
        for problem in self.config.warnings:
            log.warning("configuration: %s", problem)
        self._metrics = MetricsStore(os.path.join(self.config.supervisor.log_dir, "metrics.sqlite"),
                                    max(s.metrics_retention for s in self.config.services))
        self._collector = Collector(self.metrics)
        return self.config

    def isolate(self, config: Any) -> Any:
        """`config` with the log directories this supervisor must keep apart (also on reload)."""
        return log_isolation.separate(config, self.scope, self.shared_log_dirs)

    def _install_logging(self) -> None:
        sup = self.config.supervisor
        own = self.capture.service(SUPERVISOR_LOG, sup.log_dir, 10 * 2**20, 5, sup.log_level)
        root = logging.getLogger("speedysvc")
        root.setLevel(logging.DEBUG)
        file_handler = WriterHandler(own)
        file_handler.setLevel(sup.log_level)
        service_handler = ServiceLogHandler(self.capture)
        service_logger = logging.getLogger(SERVICE_LOGGER)
        for logger, handler in ((root, file_handler), (service_logger, service_handler)):
            logger.addHandler(handler)
            self._log_handlers.append((logger, handler))
        if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                   for h in root.handlers + logging.getLogger().handlers):
            console = logging.StreamHandler(sys.stderr)
            console.setLevel(sup.log_level)
            console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(console)
            self._log_handlers.append((root, console))

    def start_control(self, control_service: Any) -> None:
        from ..serve import serve
        port = self.config.supervisor.control_port
        try:
            # shared memory is private to this user (mode 0600); loopback TCP is not, so it
            # needs the secret that only the (0600) state file tells
            self.control_secret = secrets.token_hex(16)
            self.control = self._stack.enter_context(serve(
                control_service, workers=CONTROL_THREADS, in_process=True, scope=self.scope,
                tcp=f"127.0.0.1:{port}", secret=self.control_secret))
        except Exception as exc:
            raise BootError(f"the control API could not start on 127.0.0.1:{port}: {exc}") from exc
        log.info("supervisor pid %d, scope %s, %s: control %s and %s", os.getpid(), self.scope,
                 self.config.path, self.control.shm_address, self.control.tcp_address)

    def write_state(self, config: Any, services: list[str], started_at: float,
                    web_url: Optional[str]) -> None:
        """The state file tools and clients find this supervisor by (see state_file)."""
        self.state.write(scope=self.scope, ini=config.path, control_address=self.control.shm_address,
                         control_tcp_address=self.control.tcp_address,
                         control_secret=self.control_secret, web_monitor=web_url,
                         started_at=started_at, log_dir=config.supervisor.log_dir,
                         log_dirs=log_isolation.dirs_of(config), services=services)

    def state_differs(self, services: list[str], web_url: Optional[str]) -> bool:
        data = self._state.data if self._state is not None else {}
        return data.get("services") != services or data.get("web_monitor") != web_url

    def close(self, exit_code: int) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        if self._collector is not None:
            self._collector.stop()
        if self._metrics is not None:
            self._metrics.close()
        if self._state is not None:
            self._state.remove()
        with contextlib.suppress(Exception):
            naming.sweep_dead_clients(self.scope)
        if self._capture is not None:
            log.info("supervisor stopped (exit code %d)", exit_code)
            for logger, handler in self._log_handlers:
                logger.removeHandler(handler)
            self.capture.stop()

    # -- housekeeping ----------------------------------------------------------------------
    def collect_metrics(self, pools: Iterable[SupervisedPool]) -> None:
        now = self.system.monotonic()
        for sp in pools:
            if not sp.has_workers:
                if self._next_collect.pop(sp.name, None) is not None:
                    self.collector.stopped(sp.name)
                continue
            due = self._next_collect.setdefault(sp.name, now)
            if now < due:
                continue
            self._next_collect[sp.name] = now + sp.config.metrics_interval
            self.collector.submit(ServiceSnapshot(sp.name, self.system.time(), sp.metrics_readings(),
                                                  sp.config.metrics_retention))

    def sweep_dead_clients(self) -> None:
        """Clients killed with SIGKILL leave their channels in /dev/shm; remove them while the
        services run on, not only at the next start."""
        now = self.system.monotonic()
        if now < self._next_client_sweep:
            return
        self._next_client_sweep = now + self.config.supervisor.client_sweep_interval
        with contextlib.suppress(OSError):
            removed = naming.sweep_dead_clients(self.scope)
            if removed:
                log.info("removed %d shared-memory object(s) of clients that died", removed)

    def next_wakeups(self) -> list[float]:
        return list(self._next_collect.values())
