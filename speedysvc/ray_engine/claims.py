"""Node-local records of the request ids a service's replicas started (the at-most-once guard).

Each node keeps, per Serve application, two append-only files of 16-byte request ids
(`<dir>/<app>.0` and `.1`; writing switches to the other, emptied, file every ROTATE_EVERY ids,
so a record lives for at least ROTATE_EVERY later calls -- a re-delivery comes within
moments of the death that caused it). Appending is one write(2) of 16 bytes with O_APPEND:
it survives the replica being killed right after, because the page cache is the kernel's.

`claimed_anywhere` is only asked on a re-delivery (attempt > 1): it reads the local files and
runs a tiny task pinned to each other live node to read theirs. Files are removed when the
service stops (`remove_everywhere`) and, for a local Ray instance, with its temp dir.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any, Callable, Optional, TypeVar, cast

T = TypeVar("T")

ID_BYTES = 16
ROTATE_EVERY = 65536


def default_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"speedysvc-claims-{os.getuid()}")


def _paths(directory: str, name: str) -> list[str]:
    return [os.path.join(directory, f"{name}.{i}") for i in (0, 1)]


class ClaimsFile:
    def __init__(self, directory: str, name: str):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.paths = _paths(directory, name)
        self.lock = threading.Lock()
        self.index = 0
        self.count = 0
        self.fd = os.open(self.paths[0], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def add(self, request_id: bytes) -> None:
        with self.lock:
            os.write(self.fd, request_id[:ID_BYTES].ljust(ID_BYTES, b"\0"))
            self.count += 1
            if self.count >= ROTATE_EVERY:
                os.close(self.fd)
                self.index ^= 1
                self.count = 0
                self.fd = os.open(self.paths[self.index],
                                  os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def holds(directory: str, name: str, request_id: bytes) -> bool:
    """Whether this node's files of `name` hold `request_id`."""
    rid = request_id[:ID_BYTES].ljust(ID_BYTES, b"\0")
    for path in _paths(directory, name):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        start = 0
        while True:
            at = data.find(rid, start)
            if at < 0:
                break
            if at % ID_BYTES == 0:
                return True
            start = at + 1
    return False


def remove(directory: str, name: str) -> int:
    removed = 0
    for path in _paths(directory, name):
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


_nodes_cache: tuple[float, list[str]] = (0.0, [])
NODES_CACHE_S = 2.0


def _other_nodes() -> list[str]:
    """Live nodes but this one; asked of the GCS at most every NODES_CACHE_S (re-deliveries
    of rejected requests are frequent under load; a node joining is not)."""
    global _nodes_cache
    import ray
    at, nodes = _nodes_cache
    if time.monotonic() - at > NODES_CACHE_S:
        here = ray.get_runtime_context().get_node_id()
        every_node: list[dict[str, Any]] = cast(Any, ray).nodes()  # ray.nodes() is unannotated
        nodes = [n["NodeID"] for n in every_node if n.get("Alive") and n["NodeID"] != here]
        _nodes_cache = (time.monotonic(), nodes)
    return nodes


def _on_every_other_node(fn: Callable[..., T], *args: Any) -> list[T]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    task = ray.remote(num_cpus=0, max_retries=0)(fn)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                         ).remote(*args) for node in _other_nodes()]
    results: list[T] = ray.get(refs, timeout=30) if refs else []
    return results


def claimed_anywhere(directory: str, name: str, request_id: bytes) -> bool:
    """Whether any live node's replicas of `name` started `request_id` (a re-delivery)."""
    if holds(directory, name, request_id):
        return True
    return any(_on_every_other_node(holds, directory, name, request_id))


def remove_everywhere(directory: Optional[str], name: str) -> None:
    directory = directory or default_dir()
    remove(directory, name)
    try:
        _on_every_other_node(remove, directory, name)
    except Exception:  # noqa: BLE001 - best effort: a node may be gone
        pass
