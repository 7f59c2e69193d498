"""A pool owns one service's workers: the shared-memory objects, and one OS process per worker.

The pool is mechanism only (start, stop, replace, count); when and why to do so (scaling,
back-off, memory limits, hang detection) is decided by its owner, a ServicePool (which the
arbiter drives, or serve() for embedded use).
"""
from __future__ import annotations

import dataclasses
import errno
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, IO, Optional

from .. import naming
from ..methods import ServerMethodsBase
from ..shm import service_segment as ss
from ..shm.events import EventRing
from ..tcp import port_holder
from ..tcp.server import listen
from ..tcp.settings import TCPSettings  # noqa: F401 - re-exported: pools are configured with it

log = logging.getLogger("speedysvc.pool")


@dataclass
class WorkerProcess:
    worker_id: int
    slot: int
    popen: "subprocess.Popen[bytes]"
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
                 env: Optional[dict[str, Any]] = None, stdout: "int | IO[Any] | None" = None,
                 stderr: "int | IO[Any] | None" = None,
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
        self.workers: list[WorkerProcess] = []
        self.tcp = tcp
        self.tcp_port: Optional[int] = None
        self._listener: Optional[socket.socket] = None
        self.front: "Optional[subprocess.Popen[bytes]]" = None  # the TCP front process (tcp/front.py)
        self._front_started_at = 0.0
        self._front_draining = False
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
        """Listen on the service's port for the pool's life; the TCP front accepts on it.

        Plain bind, no SO_REUSEPORT: a port another deployment holds is refused, never shared
        (the kernel would split the callers between the two)."""
        host, port = self._tcp.host, self._tcp.port
        try:
            self._tcp.tls_context()  # unreadable certificates fail here, not in the front
        except ValueError as exc:
            raise OSError(errno.EINVAL, f"{self.name} cannot serve TLS: {exc}") from None
        try:
            self._listener = listen(host, port)
        except OSError as exc:
            holder = port_holder.describe(port) if port else None
            raise OSError(exc.errno, f"{self.name} could not listen on {host}:{port}: {exc.strerror}"
                                     + (f"; the port is held by {holder}" if holder else "")) from None
        self.tcp_port = self._listener.getsockname()[1]

    @property
    def _seg(self) -> ss.ServiceSegment:
        """The segment, once open() made it."""
        if self.segment is None:
            raise RuntimeError(f"the pool of {self.name!r} is not open")
        return self.segment

    @property
    def _tcp(self) -> TCPSettings:
        """The TCP settings of a pool that serves TCP."""
        if self.tcp is None:
            raise RuntimeError(f"{self.name!r} does not serve TCP")
        return self.tcp

    @property
    def tcp_address(self) -> Optional[str]:
        if self.tcp_port is None:
            return None
        return self._tcp.address(self.tcp_port)

    def _child_env(self) -> dict[str, Any]:
        env = dict(os.environ if self.env is None else self.env)
        env.pop("SPEEDYSVC_TCP_SECRET", None)
        env["SPEEDYSVC_SCOPE"] = self.scope  # so "shm://" inside a worker reaches its siblings
        # children must import the service (and speedysvc) the way this process did
        env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path, env.get("PYTHONPATH", "")] if p)
        return env

    # -- the TCP front -------------------------------------------------------------------
    def _start_front(self) -> None:
        """One process per pool serves the TCP connections and feeds their calls into the
        shared-memory queue (tcp/front.py). Started from the thread that starts workers, so
        that it dies with the pool's host like they do."""
        assert self._listener is not None, "_reserve_port() comes first"
        fd = self._listener.fileno()
        settings = {f.name: getattr(self._tcp, f.name) for f in dataclasses.fields(self._tcp)
                    if f.name not in ("host", "port", "secret")}
        cmd = [sys.executable, "-m", "speedysvc.tcp.front", "--scope", self.scope, "--name", self.name,
               "--listen-fd", str(fd), "--parent-pid", str(os.getpid()), "--settings", json.dumps(settings)]
        env = self._child_env()
        if self._tcp.secret:
            env["SPEEDYSVC_TCP_SECRET"] = self._tcp.secret  # never on the command line
        # its log goes where this process's goes (worker pipes are per worker)
        self.front = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, pass_fds=(fd,))
        self._front_started_at = time.monotonic()
        self._front_draining = False

    def _check_front(self) -> None:
        """Start the front, or replace one that died (at most once a second: a front that
        cannot start must not fork in a loop); its connections are lost, the port stays
        listening. A front draining because every worker stopped is replaced only once it
        has left and workers serve again."""
        if self._listener is None:
            return
        front = self.front
        if front is not None and front.poll() is None:
            return
        if self._front_draining:
            if not self.live():
                return
        elif front is not None:
            if time.monotonic() - self._front_started_at < 1.0:
                return
            log.warning("the TCP front of %s (pid %s) exited with code %s; starting another",
                        self.name, front.pid, front.returncode)
        self._start_front()

    def _drain_front(self) -> None:
        """GOAWAY to TCP clients and finish their calls: the service is stopping."""
        if self.front is not None and self.front.poll() is None and not self._front_draining:
            self._front_draining = True
            self.front.send_signal(signal.SIGTERM)

    def _end_front(self, timeout: float) -> None:
        front, self.front = self.front, None
        if front is None:
            return
        if front.poll() is None:
            if not self._front_draining:
                front.send_signal(signal.SIGTERM)
            try:
                front.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the TCP front of %s (pid %s) did not stop within %.1fs; killing it",
                            self.name, front.pid, timeout)
                front.kill()
                front.wait()
        self._front_draining = False

    def front_pid(self) -> Optional[int]:
        return self.front.pid if self.front is not None and self.front.poll() is None else None

    def spawn(self) -> WorkerProcess:
        if self.tcp is not None:
            self._check_front()
        worker_id = next(self._ids)
        slot = self._seg.claim_slot(worker_id)
        cmd = [sys.executable, "-m", "speedysvc.worker_main", "--service", self.import_path,
               "--scope", self.scope, "--name", self.name, "--slot", str(slot),
               "--worker-id", str(worker_id), "--parent-pid", str(os.getpid())]
        if self.allow_insecure is not None:
            cmd += ["--allow-insecure", str(int(self.allow_insecure))]
        env = self._child_env()
        try:
            popen = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.stdout,
                                     stderr=self.stderr, start_new_session=False)
        except OSError:
            self._seg.release_slot(slot)
            raise
        self._seg.set_worker_word(slot, ss.W_PID, popen.pid)
        worker = WorkerProcess(worker_id, slot, popen)
        self.workers.append(worker)
        return worker

    def ready_count(self) -> int:
        """Workers that have entered their serving loop."""
        n = 0
        for w in self.workers:
            state = self._seg.worker_word(w.slot, ss.W_STATE)
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

    def wait_exited(self, timeout: float) -> None:
        """Wait (bounded) for killed workers to exit, so reap() finds them gone."""
        deadline = time.monotonic() + timeout
        for w in list(self.workers):
            try:
                w.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # pragma: no cover - KILL is not refused
                pass

    def reap(self) -> list[tuple[WorkerProcess, int]]:
        """Forget workers that exited; returns them with their exit codes. A TCP front that
        died is replaced here too (reap runs on the thread that spawns)."""
        if self.tcp is not None and self.front is not None:
            self._check_front()
        gone = []
        for w in list(self.workers):
            code = w.popen.poll()
            if code is not None:
                self.workers.remove(w)
                state = self._seg.worker_word(w.slot, ss.W_STATE)
                w.booted = state in (ss.IDLE, ss.BUSY, ss.STOPPING, ss.EXITED)
                self._seg.release_slot(w.slot)
                gone.append((w, code))
                if state not in (ss.EXITED,) and w.stopping_since is None:
                    log.warning("worker %s (pid %s) of %s exited with code %s", w.worker_id, w.pid,
                                self.name, code)
        return gone

    def request_stop(self, worker: WorkerProcess) -> None:
        """Graceful: the worker finishes its current call, then exits."""
        if worker.stopping_since is None:
            worker.stopping_since = time.monotonic()
        self._seg.request_stop(worker.slot)
        try:
            worker.popen.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self.live():  # the whole service is stopping: TCP clients get GOAWAY now
            self._drain_front()

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
        """Stop every worker (graceful, then KILL after `timeout`) and remove shm objects.
        The TCP front goes first, finishing the calls it forwarded while workers remain."""
        self._end_front(timeout)
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
        # workers are gone by now: the calls of a front still draining cannot complete
        self._end_front(0.5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self.tcp_port = None
        if self.events is not None:
            self.events.destroy()
            self.events = None
        if self.segment is not None:
            self.segment.destroy()
            self.segment = None
        naming.sweep_dead_clients(self.scope)
