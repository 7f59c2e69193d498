"""A pool owns one service's workers: the shared-memory objects, and one OS process per worker.

The pool is mechanism only (start, stop, replace, count); when and why to do so (scaling,
back-off, memory limits, hang detection) is decided by its owner, the arbiter, or by serve()
for embedded use.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Optional

from .. import naming
from ..methods import ServerMethodsBase
from ..shm import service_segment as ss
from ..shm.events import EventRing

log = logging.getLogger("speedysvc.pool")


@dataclass(frozen=True)
class TCPSettings:
    """TCP served by the workers themselves (tcp_bind and friends in the .ini)."""
    host: str = "127.0.0.1"
    port: int = 0                      # 0: any free port, chosen when the pool opens
    secret: Optional[str] = field(default=None, repr=False)
    max_frame: int = 1 << 30
    compression: Optional[str] = None
    drain_timeout: float = 10.0


@dataclass
class WorkerProcess:
    worker_id: int
    slot: int
    popen: subprocess.Popen
    started_at: float = field(default_factory=time.time)
    stopping_since: Optional[float] = None
    booted: bool = False  # set when reaped: had it reached its serving loop?

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class WorkerPool:
    def __init__(self, service_cls: type, scope: str, *, import_path: Optional[str] = None,
                 name: Optional[str] = None, allow_insecure: Optional[bool] = None,
                 env: Optional[dict] = None, stdout: "int | IO | None" = None,
                 stderr: "int | IO | None" = None,
                 on_spawn: Optional[Callable[[WorkerProcess], None]] = None,
                 tcp: Optional[TCPSettings] = None):
        if not (isinstance(service_cls, type) and issubclass(service_cls, ServerMethodsBase)):
            raise TypeError(f"{service_cls!r} is not a ServerMethodsBase subclass")
        self.service_cls = service_cls
        self.name = name or service_cls.service_name()
        self.scope = naming.check_scope(scope)
        self.import_path = import_path or f"{service_cls.__module__}:{service_cls.__qualname__}"
        if self.import_path.startswith("__main__:"):
            raise ValueError("service classes run in worker processes must be importable by module "
                             "path; define the class in a module, not in __main__")
        self.allow_insecure = allow_insecure
        self.env = env
        self.stdout, self.stderr = stdout, stderr
        self.on_spawn = on_spawn
        self.workers: list[WorkerProcess] = []
        self.tcp = tcp
        self.tcp_port: Optional[int] = None
        self._port_reservation: Optional[socket.socket] = None
        self.segment: Optional[ss.ServiceSegment] = None
        self.events: Optional[EventRing] = None
        self._ids = itertools.count(1)

    # -- life cycle -------------------------------------------------------------------
    def open(self) -> None:
        """Create the service's shared-memory objects (sweeping stale ones first)."""
        description = self.service_cls.describe()
        description["name"] = self.name
        if self.allow_insecure is not None:
            description["allow_insecure_serialisation"] = self.allow_insecure
        if self.tcp is not None:
            self._reserve_port()  # before any shm object: a taken port fails cleanly
        self.segment = ss.ServiceSegment.create(self.scope, self.name, description)
        self.events = EventRing(self.scope, self.name, create=True)

    def _reserve_port(self) -> None:
        """Hold the TCP port for the pool's life: a bound, not listening, SO_REUSEPORT socket.
        Workers listen on the same port; the kernel hands connections only to listeners."""
        host = self.tcp.host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, self.tcp.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"{self.name} could not listen on {host}:{self.tcp.port}: "
                                     f"{exc.strerror}") from None
        self._port_reservation = sock
        self.tcp_port = sock.getsockname()[1]

    @property
    def tcp_address(self) -> Optional[str]:
        if self.tcp_port is None:
            return None
        host = self.tcp.host
        return f"tcp://{f'[{host}]' if ':' in host else host}:{self.tcp_port}"

    def spawn(self) -> WorkerProcess:
        worker_id = next(self._ids)
        slot = self.segment.claim_slot(worker_id)
        cmd = [sys.executable, "-m", "speedysvc.worker_main", "--service", self.import_path,
               "--scope", self.scope, "--name", self.name, "--slot", str(slot),
               "--worker-id", str(worker_id), "--parent-pid", str(os.getpid())]
        if self.allow_insecure is not None:
            cmd += ["--allow-insecure", str(int(self.allow_insecure))]
        env = dict(os.environ if self.env is None else self.env)
        env.pop("SPEEDYSVC_TCP_SECRET", None)
        if self.tcp is not None:
            cmd += ["--tcp-host", self.tcp.host, "--tcp-port", str(self.tcp_port),
                    "--tcp-max-frame", str(self.tcp.max_frame), "--drain-timeout", str(self.tcp.drain_timeout)]
            if self.tcp.compression and self.tcp.compression != "none":
                cmd += ["--tcp-compression", self.tcp.compression]
            if self.tcp.secret:
                env["SPEEDYSVC_TCP_SECRET"] = self.tcp.secret  # never on the command line
        env["SPEEDYSVC_SCOPE"] = self.scope  # so "shm://" inside a worker reaches its siblings
        # workers must import the service the way this process did
        env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path, env.get("PYTHONPATH", "")] if p)
        try:
            popen = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.stdout,
                                     stderr=self.stderr, start_new_session=False)
        except OSError:
            self.segment.release_slot(slot)
            raise
        self.segment.set_worker_word(slot, ss.W_PID, popen.pid)
        worker = WorkerProcess(worker_id, slot, popen)
        self.workers.append(worker)
        if self.on_spawn:
            self.on_spawn(worker)
        return worker

    def ready_count(self) -> int:
        """Workers that have entered their serving loop."""
        n = 0
        for w in self.workers:
            state = self.segment.worker_word(w.slot, ss.W_STATE)
            if w.alive() and state in (ss.IDLE, ss.BUSY) and w.stopping_since is None:
                n += 1
        return n

    def wait_ready(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_count() >= n:
                return True
            if self.workers and all(not w.alive() for w in self.workers):
                return False
            time.sleep(0.01)
        return self.ready_count() >= n

    def reap(self) -> list[tuple[WorkerProcess, int]]:
        """Forget workers that exited; returns them with their exit codes."""
        gone = []
        for w in list(self.workers):
            code = w.popen.poll()
            if code is not None:
                self.workers.remove(w)
                state = self.segment.worker_word(w.slot, ss.W_STATE)
                w.booted = state in (ss.IDLE, ss.BUSY, ss.STOPPING, ss.EXITED)
                self.segment.release_slot(w.slot)
                gone.append((w, code))
                if state not in (ss.EXITED,) and w.stopping_since is None:
                    log.warning("worker %s (pid %s) of %s exited with code %s", w.worker_id, w.pid,
                                self.name, code)
        return gone

    def request_stop(self, worker: WorkerProcess) -> None:
        """Graceful: the worker finishes its current call, then exits."""
        if worker.stopping_since is None:
            worker.stopping_since = time.monotonic()
        self.segment.request_stop(worker.slot)
        try:
            worker.popen.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def dump_stacks(self, worker: WorkerProcess) -> bool:
        """Ask a worker to write every thread's Python stack to its stderr (faulthandler on
        SIGUSR1, installed by worker_main); False when it is already gone."""
        try:
            os.kill(worker.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return False
        return True

    def kill(self, worker: WorkerProcess) -> None:
        try:
            worker.popen.kill()
        except ProcessLookupError:
            pass

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive() and w.stopping_since is None]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker (graceful, then KILL after `timeout`) and remove shm objects."""
        for w in self.workers:
            self.request_stop(w)
        deadline = time.monotonic() + timeout
        for w in self.workers:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                w.popen.wait(remaining)
            except subprocess.TimeoutExpired:
                log.warning("worker %s (pid %s) of %s did not stop within %.1fs; killing it",
                            w.worker_id, w.pid, self.name, timeout)
                self.kill(w)
                w.popen.wait()
        self.workers.clear()
        self.close()

    def close(self) -> None:
        if self._port_reservation is not None:
            self._port_reservation.close()
            self._port_reservation = None
            self.tcp_port = None
        if self.events is not None:
            self.events.destroy()
            self.events = None
        if self.segment is not None:
            self.segment.destroy()
            self.segment = None
        naming.sweep_dead_clients(self.scope)
