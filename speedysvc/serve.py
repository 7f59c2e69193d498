"""serve(): run a service from Python -- for tests, benchmarks and embedding.

    with serve(Echo, workers=2, tcp="127.0.0.1:0") as svc:
        client = connect(Echo, svc.shm_address)

Workers are real processes (or threads of this process with in_process=True, to serve an
object of the application itself). A worker that dies is replaced. The supervisor
(`python -m speedysvc FILE.ini`) adds scaling, back-off, logs and metrics on top of the same
WorkerPool.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Any, Optional

from . import naming
from .dispatch import Dispatcher
from .errors import ServiceUnavailable
from .methods import ServerMethodsBase, create_instance
from .shm import service_segment as ss
from .shm.events import EventRing
from .shm.worker_loop import Publisher, ShmWorker
from .supervisor.pool import TCPSettings, WorkerPool

log = logging.getLogger("speedysvc.serve")

BOOT_FAILURES_FATAL = 3  # workers dying before they are ready, in a row
CLIENT_SWEEP_EVERY_S = 30.0


def new_scope() -> str:
    return "t" + secrets.token_hex(5)


def _parse_bind(tcp: str) -> tuple[str, int]:
    host, sep, port = tcp.rpartition(":")
    if not sep:
        return tcp, 0
    return host or "127.0.0.1", int(port)


class RunningService:
    """Handle returned by serve()."""

    def __init__(self, service: Any, workers: int, scope: str, tcp: Optional[str], secret: Optional[str],
                 in_process: bool, allow_insecure: Optional[bool], start_timeout: float,
                 name: Optional[str], tcp_options: Optional[dict]):
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
        self.tcp_address: Optional[str] = None
        self.pool: Optional[WorkerPool] = None
        self._threads: list[tuple[threading.Thread, threading.Event]] = []
        self._segment: Optional[ss.ServiceSegment] = None
        self._events: Optional[EventRing] = None
        self._gateway = None
        self._stop = threading.Event()
        self._monitor: Optional[threading.Thread] = None
        self.restarts = 0
        self.boot_failures = 0

    def __enter__(self) -> "RunningService":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def shm_address(self) -> str:
        return f"shm://{self.scope}"

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

    def _start_processes(self) -> None:
        tcp = None
        if self.tcp_bind:
            host, port = _parse_bind(self.tcp_bind)
            tcp = TCPSettings.from_options(host, port, self.secret, self.tcp_options)
        self.pool = WorkerPool(self.service_cls, self.scope, name=self.name, allow_insecure=self.allow_insecure,
                               tcp=tcp)
        self.pool.open()
        self.tcp_address = self.pool.tcp_address
        # the monitor thread spawns every worker: PR_SET_PDEATHSIG ties a worker to the thread
        # that started it, so that thread must live as long as the pool
        ready = threading.Event()
        self._monitor = threading.Thread(target=self._monitor_loop, args=(ready,),
                                         name=f"speedysvc-serve-{self.name}", daemon=True)
        self._monitor.start()
        ready.wait(self.start_timeout)
        deadline = time.monotonic() + self.start_timeout
        while self.pool.ready_count() < self.n_workers:
            if self.boot_failures >= BOOT_FAILURES_FATAL:
                raise ServiceUnavailable(f"workers of {self.name!r} exit before they are ready "
                                         f"({self.boot_failures} in a row; see their stderr above)")
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(f"{self.n_workers} worker(s) of {self.name!r} did not start within "
                                         f"{self.start_timeout:g}s (see their stderr above)")
            time.sleep(0.01)

    def _monitor_loop(self, ready: threading.Event) -> None:
        for _ in range(self.n_workers):
            self.pool.spawn()
        ready.set()
        next_sweep = time.monotonic() + CLIENT_SWEEP_EVERY_S
        while not self._stop.wait(0.05):
            if time.monotonic() >= next_sweep:  # channels of clients killed with SIGKILL
                naming.sweep_dead_clients(self.scope)
                next_sweep = time.monotonic() + CLIENT_SWEEP_EVERY_S
            for worker, code in self.pool.reap():
                if self._stop.is_set():
                    return
                self.boot_failures = 0 if worker.booted else self.boot_failures + 1
                if self.boot_failures >= BOOT_FAILURES_FATAL:
                    return  # start() reports it; replacing them would only fail again
                self.restarts += 1
                log.info("replacing worker %s of %s (exit code %s)", worker.worker_id, self.name, code)
                self.pool.spawn()

    def _start_threads(self) -> None:
        description = self.service_cls.describe()
        description["name"] = self.name
        self._segment = ss.ServiceSegment.create(self.scope, self.name, description)
        self._events = EventRing(self.scope, self.name, create=True)
        instance = self.instance if self.instance is not None else create_instance(self.service_cls)
        instance.speedysvc_publisher = Publisher(self._events)
        self.instance = instance
        instance.on_start()
        for i in range(self.n_workers):
            stop = threading.Event()
            slot = self._segment.claim_slot(i + 1, os.getpid())
            worker = ShmWorker(Dispatcher(instance, self.allow_insecure), self._segment, slot, i + 1, stop)
            t = threading.Thread(target=worker.run, name=f"speedysvc-{self.name}-{i + 1}", daemon=True)
            t.start()
            self._threads.append((t, stop))
        deadline = time.monotonic() + self.start_timeout
        while self._segment.live_worker_count() < self.n_workers and time.monotonic() < deadline:
            time.sleep(0.005)

    def _start_gateway(self) -> None:
        """TCP for worker threads: a gateway forwarding over shared memory."""
        from .tcp.gateway import TCPGateway
        host, port = _parse_bind(self.tcp_bind)
        settings = TCPSettings.from_options(host, port, self.secret, self.tcp_options)
        self._gateway = TCPGateway(self.scope, self.name, settings, allow_insecure=self._insecure_allowed())
        self._gateway.start()
        self.tcp_address = settings.address(self._gateway.port)

    def _insecure_allowed(self) -> bool:
        if self.allow_insecure is not None:
            return self.allow_insecure
        return bool(self.service_cls.allow_insecure_serialisation)

    # -- inspection ---------------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        if self.pool is not None:
            return [w.pid for w in self.pool.live()]
        return [os.getpid()] * len(self._threads)

    def wait_for_workers(self, n: Optional[int] = None, timeout: float = 30.0) -> bool:
        """Wait until `n` (default: the configured number of) workers serve calls."""
        n = self.n_workers if n is None else n
        if self.pool is None:
            return True
        return self.pool.wait_ready(n, timeout)

    # -- stop ---------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        if self._monitor is not None:
            self._monitor.join(timeout)
            self._monitor = None
        if self.pool is not None:
            self.pool.stop(timeout)
            self.pool = None
        if self._threads:
            for _, stop in self._threads:
                stop.set()
            for t, _ in self._threads:
                t.join(timeout)
            self._threads.clear()
            if self.instance is not None:
                self.instance.on_stop()
        if self._events is not None:
            self._events.destroy()
            self._events = None
        if self._segment is not None:
            self._segment.destroy()
            self._segment = None
            naming.sweep_dead_clients(self.scope)


def serve(service: Any, workers: int = 1, *, scope: Optional[str] = None, tcp: Optional[str] = None,
          secret: Optional[str] = None, in_process: bool = False, allow_insecure: Optional[bool] = None,
          start_timeout: float = 60.0, name: Optional[str] = None,
          tcp_options: Optional[dict] = None) -> RunningService:
    """Run `service` (a ServerMethodsBase subclass, or an instance with in_process=True).

    Use it as a context manager (`with serve(Echo) as svc:`), or keep the returned
    RunningService and call its stop() when done.

    scope: names the shared-memory objects (default: $SPEEDYSVC_SCOPE, else "default" -- the
      scope a client whose address names none finds when no supervisor serves the service).
    tcp: "host:port" to also serve over TCP ("127.0.0.1:0" picks a free port).
    secret: shared secret the TCP clients must prove they know.
    tcp_options: fields of speedysvc.tcp.settings.TCPSettings (max_frame, compression,
      header_timeout, idle_timeout, max_connections, max_connections_per_address,
      auth_failure_backoff, tls_cert, tls_key, tls_client_ca, drain_timeout).
    """
    if not in_process and not isinstance(service, type):
        raise TypeError("pass the service class, or in_process=True to serve an instance")
    cls = service if isinstance(service, type) else type(service)
    if not issubclass(cls, ServerMethodsBase):
        raise TypeError(f"{cls.__name__} is not a ServerMethodsBase subclass")
    running = RunningService(service, workers, scope or naming.default_scope(), tcp, secret, in_process,
                             allow_insecure, start_timeout, name, tcp_options)
    return running.start()
