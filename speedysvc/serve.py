"""serve(): run a service from Python -- for tests, benchmarks and embedding.

    with serve(Echo, workers=2, tcp="127.0.0.1:0") as svc:
        client = connect(Echo, svc.shm_address)

Workers are real processes (or threads of this process with in_process=True, to serve an
object of the application itself). Processes are run by the supervisor's ServicePool with the
option registry's defaults -- the same back-off, crash-loop detection and health checks as
under `python -m speedysvc FILE.ini` -- with the worker count pinned (no scaling), driven from
a monitor thread (serve_monitor.py).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from . import naming
from .errors import ServiceUnavailable
from .methods import ServerMethodsBase, create_instance
from .serve_monitor import ServeMonitor
from .shm import service_segment as ss
from .shm.events import EventRing
from .supervisor.config import ServiceConfig
from .supervisor.pool import WorkerPool
from .supervisor.pool_interface import ServiceState
from .supervisor.service_pool import ServicePool
from .tcp.settings import TCPSettings
from .worker_boot import booted

if TYPE_CHECKING:
    from .tcp.gateway import TCPGateway

BOOT_FAILURES_FATAL = 3  # workers dying before they are ready, in a row
POLL_S = 0.01


def new_scope() -> str:
    return "t" + secrets.token_hex(5)


def _parse_bind(tcp: str) -> tuple[str, int]:
    host, sep, port = tcp.rpartition(":")
    if not sep:
        return tcp, 0
    return host or "127.0.0.1", int(port)


class RunningService:
    """Handle returned by serve()."""

    def __init__(self, service: type[ServerMethodsBase] | ServerMethodsBase, workers: int, scope: str,
                 tcp: Optional[str], secret: Optional[str], in_process: bool,
                 allow_insecure: Optional[bool], start_timeout: float, name: Optional[str],
                 tcp_options: Optional[dict[str, Any]], options: Optional[dict[str, Any]] = None):
        self.service_cls = service if isinstance(service, type) else type(service)
        self.instance = None if isinstance(service, type) else service
        self.name = name or self.service_cls.service_name()
        self.scope = naming.check_scope(scope)
        self.n_workers = workers
        self.in_process = in_process
        self.allow_insecure = allow_insecure
        self.secret = secret
        self.start_timeout = start_timeout
        self.tcp_bind = tcp
        self.tcp_options = tcp_options or {}
        self.options = options or {}
        self.tcp_address: Optional[str] = None
        # processes: the pool and the thread that drives it
        self.service_pool: Optional[ServicePool] = None
        self._monitor: Optional[ServeMonitor] = None
        # threads: the shared-memory objects, the workers, the instance's lifetime, TCP
        self._threads: list[tuple[threading.Thread, threading.Event]] = []
        self._segment: Optional[ss.ServiceSegment] = None
        self._events: Optional[EventRing] = None
        self._lifetime = contextlib.ExitStack()
        self._gateway: Optional[TCPGateway] = None

    def __enter__(self) -> "RunningService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def shm_address(self) -> str:
        return f"shm://{self.scope}"

    @property
    def pool(self) -> Optional[WorkerPool]:
        """The WorkerPool of the worker processes (None for threads, or when none runs)."""
        if self.service_pool is None:
            return None
        pool: Optional[WorkerPool] = self.service_pool.pool
        return pool

    @property
    def restarts(self) -> int:
        """Workers replaced because they crashed, hung or outgrew their memory."""
        return self.service_pool.restarts if self.service_pool is not None else 0

    @property
    def boot_failures(self) -> int:
        """Workers in a row that exited before they became ready."""
        return self.service_pool.boot_failures if self.service_pool is not None else 0

    # -- start --------------------------------------------------------------------------
    def start(self) -> "RunningService":
        try:
            if self.in_process:
                self._start_threads()
                if self.tcp_bind:
                    self._start_gateway()
            else:
                self._start_processes()
        except BaseException:
            self.stop()
            raise
        return self

    def _tcp_settings(self) -> Optional[TCPSettings]:
        if not self.tcp_bind:
            return None
        host, port = _parse_bind(self.tcp_bind)
        return TCPSettings.from_options(host, port, self.secret, self.tcp_options)

    def _start_processes(self) -> None:
        tcp = self._tcp_settings()
        # the options given first: the worker count, start timeout and encoders are serve()'s own
        config = ServiceConfig.for_class(
            self.service_cls, **{**self.options, "min_proc_num": self.n_workers, "max_proc_num": self.n_workers,
                                 "start_timeout": self.start_timeout,
                                 "force_insecure_serialisation": self._insecure_allowed()})
        self.service_pool = ServicePool(config, self.service_cls, self.scope, name=self.name, tcp=tcp)
        self._monitor = ServeMonitor(self.service_pool)
        self._monitor.start(timeout=self.start_timeout)
        self.tcp_address = self.service_pool.tcp_address
        self._wait_until_running(self.service_pool)

    def _wait_until_running(self, sp: ServicePool) -> None:
        """Until every worker serves; ServiceUnavailable when they cannot (an embedding caller
        needs an exception, not a pool retrying in the background)."""
        deadline = time.monotonic() + self.start_timeout
        while sp.status != ServiceState.RUNNING:
            if sp.boot_failures >= BOOT_FAILURES_FATAL:
                raise ServiceUnavailable(f"workers of {self.name!r} exit before they are ready "
                                         f"({sp.boot_failures} in a row, the last: {sp.last_error}; "
                                         "see their stderr above)")
            if sp.status == ServiceState.FAILED:
                raise ServiceUnavailable(f"{self.name!r} failed: {sp.last_error} (see the workers' "
                                         "stderr above)")
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(f"{self.n_workers} worker(s) of {self.name!r} did not start within "
                                         f"{self.start_timeout:g}s (see their stderr above)")
            time.sleep(POLL_S)

    def _start_threads(self) -> None:
        description = self.service_cls.describe()
        description["name"] = self.name
        self._segment = segment = ss.ServiceSegment.create(self.scope, self.name, description)
        self._events = EventRing(self.scope, self.name, create=True)
        instance = self.instance if self.instance is not None else create_instance(self.service_cls)
        self.instance = instance
        # one instance for every thread: on_start now, on_stop once the threads have ended
        new_worker = self._lifetime.enter_context(booted(instance, segment, self._events, self.allow_insecure))
        for i in range(self.n_workers):
            stop = threading.Event()
            slot = segment.claim_slot(i + 1, os.getpid())
            worker = new_worker(slot, i + 1, stop)
            t = threading.Thread(target=worker.run, name=f"speedysvc-{self.name}-{i + 1}", daemon=True)
            t.start()
            self._threads.append((t, stop))
        deadline = time.monotonic() + self.start_timeout
        while segment.live_worker_count() < self.n_workers and time.monotonic() < deadline:
            time.sleep(0.005)

    def _start_gateway(self) -> None:
        """TCP for worker threads: a gateway forwarding over shared memory."""
        from .tcp.gateway import TCPGateway
        settings = self._tcp_settings()
        assert settings is not None, "only called with a tcp address"
        self._gateway = TCPGateway(self.scope, self.name, settings, allow_insecure=self._insecure_allowed())
        self._gateway.start()
        self.tcp_address = settings.address(self._gateway.port)

    def _insecure_allowed(self) -> bool:
        if self.allow_insecure is not None:
            return self.allow_insecure
        return bool(self.service_cls.allow_insecure_serialisation)

    # -- inspection and commands ----------------------------------------------------------
    def worker_pids(self) -> list[int]:
        pool = self.pool
        if pool is not None:
            return [w.pid for w in pool.live()]
        return [os.getpid()] * len(self._threads)

    def wait_for_workers(self, n: Optional[int] = None, timeout: float = 30.0) -> bool:
        """Wait until `n` (default: the configured number of) workers serve calls."""
        n = self.n_workers if n is None else n
        sp = self.service_pool
        if sp is None:
            return True  # threads serve from the start
        deadline = time.monotonic() + timeout
        while True:
            pool = sp.pool
            if pool is not None and pool.ready_count() >= n:
                return True
            if sp.status in (ServiceState.FAILED, ServiceState.STOPPED) or time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    def restart_worker(self, worker_id: int) -> str:
        """Replace one worker: its replacement starts first, then it stops gracefully (KeyError
        when no such worker runs)."""
        result: str = self._running_monitor("restart_worker").submit("restart_worker", worker_id)
        return result

    def scale(self, n: int) -> str:
        """Serve with `n` workers from now on (wait_for_workers() waits for them)."""
        result: str = self._running_monitor("scale").submit("scale", n)
        self.n_workers = n
        return result

    def _running_monitor(self, what: str) -> ServeMonitor:
        if self.in_process:
            raise RuntimeError(f"{what} needs worker processes; {self.name!r} is served by threads "
                               "(in_process=True)")
        if self._monitor is None:
            raise ServiceUnavailable(f"{self.name!r} is stopped")
        return self._monitor

    # -- stop ---------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (workers finish their calls), killing what remains after `timeout`;
        no process or shared-memory object remains."""
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        if self._monitor is not None:
            self._monitor.stop(timeout)
            self._monitor = None
        if self._threads:
            for _, stop in self._threads:
                stop.set()
            for t, _ in self._threads:
                t.join(timeout)
            self._threads.clear()
        self._lifetime.close()  # on_stop() of an in-process instance
        if self._events is not None:
            self._events.destroy()
            self._events = None
        if self._segment is not None:
            self._segment.destroy()
            self._segment = None
            naming.sweep_dead_clients(self.scope)


def serve(service: type[ServerMethodsBase] | ServerMethodsBase, workers: int = 1, *,
          scope: Optional[str] = None, tcp: Optional[str] = None, secret: Optional[str] = None,
          in_process: bool = False, allow_insecure: Optional[bool] = None, start_timeout: float = 60.0,
          name: Optional[str] = None, tcp_options: Optional[dict[str, Any]] = None,
          options: Optional[dict[str, Any]] = None) -> RunningService:
    """Run `service` (a ServerMethodsBase subclass, or an instance with in_process=True).

    Use it as a context manager (`with serve(Echo) as svc:`), or keep the returned
    RunningService and call its stop() when done. Raises ServiceUnavailable when the workers
    cannot start (they exit before they are ready, do not become ready within start_timeout,
    or their code cannot import), having stopped everything.

    scope: names the shared-memory objects (default: $SPEEDYSVC_SCOPE, else "default" -- the
      scope a client whose address names none finds when no supervisor serves the service).
    tcp: "host:port" to also serve over TCP ("127.0.0.1:0" picks a free port).
    secret: shared secret the TCP clients must prove they know.
    tcp_options: fields of speedysvc.tcp.settings.TCPSettings (max_frame, compression,
      header_timeout, idle_timeout, max_connections, max_connections_per_address,
      auth_failure_backoff, tls_cert, tls_key, tls_client_ca, drain_timeout).
    options: the supervisor's per-service options for the worker pool, named as in an .ini
      section (e.g. {"worker_hang_timeout": 0} for calls that may run longer than the default
      30 s, "restart_backoff_max", "crash_loop_restarts", "max_proc_mem_bytes"); see
      `python -m speedysvc.supervisor.options`. Worker processes only.
    """
    if not in_process and not isinstance(service, type):
        raise TypeError("pass the service class, or in_process=True to serve an instance")
    cls = service if isinstance(service, type) else type(service)
    if not issubclass(cls, ServerMethodsBase):
        raise TypeError(f"{cls.__name__} is not a ServerMethodsBase subclass")
    running = RunningService(service, workers, scope or naming.default_scope(), tcp, secret, in_process,
                             allow_insecure, start_timeout, name, tcp_options, options)
    return running.start()
