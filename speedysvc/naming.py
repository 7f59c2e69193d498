"""Names of shared-memory objects, scoped per deployment, and sweeping of stale ones.

Every segment and semaphore of a scope is named ``/ssvc_<scope>_...``, so two supervisors
(or two test runs) never collide and one scope can be swept without touching another.
Objects owned by one client carry its pid (``c<pid>x<n>``) so a crashed client's objects can
be recognised and removed.
"""
from __future__ import annotations

import os
import re

import posix_ipc

SHM_DIR = "/dev/shm"
CONTROL_SERVICE_NAME = "speedysvc_control"  # every supervisor serves its control API under it
PREFIX = "ssvc_"
_SCOPE_RE = re.compile(r"^[A-Za-z0-9]{1,24}$")
_CLIENT_RE = re.compile(r"_c(\d+)x\d+")
_SUBSCRIBER_RE = re.compile(r"\.s(\d+)x\d+$")


def default_scope() -> str:
    return os.environ.get("SPEEDYSVC_SCOPE", "default")


def check_scope(scope: str) -> str:
    if not _SCOPE_RE.match(scope):
        raise ValueError(f"scope must be 1-24 letters or digits, got {scope!r}")
    return scope


def safe_service(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:100]


def service_segment(scope: str, service: str) -> str:
    return f"/{PREFIX}{scope}_{safe_service(service)}"


def service_semaphore(scope: str, service: str, kind: str) -> str:
    """kind: 'q' (queued calls), 'l' (ring lock), 'evl' (event ring lock)."""
    return f"{service_segment(scope, service)}.{kind}"


def event_segment(scope: str, service: str) -> str:
    return f"{service_segment(scope, service)}.ev"


def subscriber_semaphore(scope: str, service: str, pid: int, n: int) -> str:
    return f"{service_segment(scope, service)}.s{pid}x{n}"


def channel_base(scope: str, pid: int, n: int) -> str:
    return f"/{PREFIX}{scope}_c{pid}x{n}"


def channel_segment(scope: str, pid: int, n: int, gen: int) -> str:
    return f"{channel_base(scope, pid, n)}g{gen}"


def channel_overflow(scope: str, pid: int, n: int, k: int) -> str:
    return f"{channel_base(scope, pid, n)}r{k}"


def list_objects(scope: str | None = None) -> list[str]:
    """Names (with leading '/') of every speedysvc object in /dev/shm, optionally of one scope."""
    prefix = PREFIX + (f"{scope}_" if scope else "")
    found = []
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry[4:] if entry.startswith("sem.") else entry
        if name.startswith(prefix):
            found.append(("sem:" if entry.startswith("sem.") else "shm:") + "/" + name)
    return sorted(found)


def _unlink(tagged: str) -> None:
    kind, name = tagged.split(":", 1)
    try:
        if kind == "sem":
            posix_ipc.unlink_semaphore(name)
        else:
            posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        pass


def sweep(scope: str) -> int:
    """Remove every object of `scope`. Only call when nothing of that scope is running."""
    objs = list_objects(check_scope(scope))
    for tagged in objs:
        _unlink(tagged)
    return len(objs)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_clients(scope: str | None = None) -> int:
    """Remove per-client objects (channels, subscriber semaphores) whose owner pid is gone."""
    removed = 0
    for tagged in list_objects(scope):
        m = _CLIENT_RE.search(tagged) or _SUBSCRIBER_RE.search(tagged)
        if m and not pid_alive(int(m.group(1))):
            _unlink(tagged)
            removed += 1
    return removed
