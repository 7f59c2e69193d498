"""How tools find a running supervisor: `<runtime_dir>/<scope>.json`.

The supervisor holds an exclusive flock on `<scope>.lock` for its whole life (the kernel drops
it when the process dies, even by SIGKILL), so a second supervisor of the same scope is refused
without trusting a possibly stale pid. The JSON file says where the control API listens:

    {"pid", "pid_started", "scope", "ini", "control_address", "control_tcp_address",
     "web_monitor", "started_at", "log_dir", "services"}

`services` lists the names the supervisor serves, so a client whose address names no scope
can find the one supervisor serving its service (speedysvc.scope_resolution). A supervisor
whose runtime_dir is not the default one also writes `<default runtime dir>/elsewhere/<scope>.path`
holding the path of its state file, so tools that only know the default directory find it.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from typing import Any, Optional

import psutil


class AlreadyRunning(Exception):
    """Another live supervisor holds this scope."""


def default_runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return os.path.join(base, "speedysvc")
    return os.path.join(tempfile.gettempdir(), f"speedysvc-{os.getuid()}")


def state_path(runtime_dir: str, scope: str) -> str:
    return os.path.join(runtime_dir, f"{scope}.json")


def pointer_path(scope: str) -> str:
    """Where a supervisor with a non-default runtime_dir leaves the path of its state file."""
    return os.path.join(default_runtime_dir(), "elsewhere", f"{scope}.path")


def _process_started(pid: int) -> Optional[float]:
    try:
        started: float = psutil.Process(pid).create_time()
        return started
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class StateFile:
    """The running supervisor's side: lock, write, update, remove."""

    def __init__(self, runtime_dir: str, scope: str):
        self.runtime_dir = runtime_dir
        self.scope = scope
        self.path = state_path(runtime_dir, scope)
        self.lock_path = os.path.join(runtime_dir, f"{scope}.lock")
        self._lock_fd: Optional[int] = None
        self.data: dict[str, Any] = {}
        elsewhere = os.path.abspath(runtime_dir) != os.path.abspath(default_runtime_dir())
        self.pointer = pointer_path(scope) if elsewhere else None

    def acquire(self) -> None:
        """Take the scope's lock; raises AlreadyRunning naming the holder."""
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        owner = os.stat(self.runtime_dir).st_uid
        if owner != os.getuid():  # someone else's directory could feed us a fake state file
            raise PermissionError(f"runtime directory {self.runtime_dir} belongs to uid {owner}, not "
                                  f"to this user ({os.getuid()}); set [supervisor] runtime_dir")
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = read_state(self.path)
            who = f"pid {holder['pid']}, {holder.get('ini')}" if holder else "another process"
            raise AlreadyRunning(f"a supervisor of scope {self.scope!r} is already running ({who}); "
                                 f"stop it first, or give this one another [supervisor] scope") from None
        self._lock_fd = fd

    def write(self, **data: Any) -> None:
        self.data.update(data)
        self.data.setdefault("pid", os.getpid())
        self.data.setdefault("pid_started", _process_started(os.getpid()))
        self.data.setdefault("scope", self.scope)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=2)
        os.replace(tmp, self.path)
        if self.pointer is not None:
            self._write_pointer()

    def _write_pointer(self) -> None:
        assert self.pointer is not None
        try:
            os.makedirs(os.path.dirname(self.pointer), mode=0o700, exist_ok=True)
            tmp = f"{self.pointer}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(os.path.abspath(self.path))
            os.replace(tmp, self.pointer)
        except OSError:  # only discovery suffers; SPEEDYSVC_SCOPE or shm://SCOPE still work
            self.pointer = None

    def remove(self) -> None:
        """Remove the state file and release the lock (only if this process holds the lock:
        a refused second supervisor must not delete the first one's file)."""
        if self._lock_fd is None:
            return
        for path in (self.path, self.pointer):
            if path is None:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(self._lock_fd)
        self._lock_fd = None


def read_state(path: str) -> Optional[dict[str, Any]]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_alive(state: dict[str, Any]) -> bool:
    """The process that wrote `state` is still running (not a new process with its pid)."""
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    started = _process_started(pid)
    if started is None:
        return False
    expected = state.get("pid_started")
    return expected is None or abs(started - expected) < 1.0


StateList = list[dict[str, Any]]


def find(runtime_dir: Optional[str] = None, scope: Optional[str] = None) -> tuple[StateList, StateList]:
    """(live supervisors, stale state files) in runtime_dir, optionally of one scope."""
    runtime_dir = runtime_dir or default_runtime_dir()
    if scope is not None:
        names = [f"{scope}.json"]
    else:
        try:
            names = sorted(n for n in os.listdir(runtime_dir) if n.endswith(".json"))
        except FileNotFoundError:
            names = []
    live: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for name in names:
        state = read_state(os.path.join(runtime_dir, name))
        if state is None:
            continue
        state["state_file"] = os.path.join(runtime_dir, name)
        (live if is_alive(state) else stale).append(state)
    return live, stale


def find_all() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(live, stale) supervisors of this user: those in the default runtime directory and
    those elsewhere that left a pointer there."""
    live, stale = find()
    seen = {s["state_file"] for s in live + stale}
    pointers = os.path.join(default_runtime_dir(), "elsewhere")
    try:
        names = sorted(n for n in os.listdir(pointers) if n.endswith(".path"))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            with open(os.path.join(pointers, name)) as f:
                path = f.read().strip()
        except OSError:
            continue
        if path in seen:
            continue
        state = read_state(path)
        if state is None:
            continue
        state["state_file"] = path
        (live if is_alive(state) else stale).append(state)
    return live, stale


def reap_dead_scopes() -> list[str]:
    """Remove the shared memory and state files of supervisors that died without cleaning up
    (SIGKILL, power loss), proven dead: their pid is gone and nobody holds their scope's lock.
    Returns the scopes swept."""
    from .. import naming
    swept = []
    _live, stale = find_all()
    for state in stale:
        scope, path = state.get("scope"), state.get("state_file")
        if not isinstance(scope, str) or not isinstance(path, str):
            continue
        lock_path = os.path.join(os.path.dirname(path), f"{scope}.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a supervisor holds it
            naming.sweep(naming.check_scope(scope))
            for leftover in (path, pointer_path(scope)):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
            swept.append(scope)
        except (OSError, ValueError):
            continue  # held (a supervisor of that scope is starting now) or not ours to judge
        finally:
            if fd is not None:
                os.close(fd)
    return swept
