"""The supervisor's control API: the one door the CLI and the web monitor go through.

Served inside the supervisor process as the speedysvc service `speedysvc_control` (shared
memory in the supervisor's scope, and loopback TCP). Methods that change or read the pools run
on the arbiter's main loop (`Arbiter.call`), so supervision stays single-threaded; logs and
metrics are read from their files directly. Contract: docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from typing import Any, Optional

from ..methods import ServerMethodsBase, msgpack_method

CONTROL_SERVICE_NAME = "speedysvc_control"


class UnknownService(LookupError):
    """No service of that name is configured in this supervisor."""


class ControlService(ServerMethodsBase):
    name = CONTROL_SERVICE_NAME
    port = None

    def __init__(self, arbiter: Any = None):
        super().__init__()
        self.arbiter = arbiter

    @msgpack_method
    def status(self) -> dict:
        """The supervisor and every service, with their workers."""
        return self.arbiter.call("status")

    @msgpack_method
    def start(self, name: str) -> dict:
        return self.arbiter.call("start", name)

    @msgpack_method
    def stop(self, name: str) -> dict:
        return self.arbiter.call("stop", name)

    @msgpack_method
    def restart(self, name: str) -> dict:
        """Rolling restart: new workers start first, old ones stop once the new ones serve."""
        return self.arbiter.call("restart", name)

    @msgpack_method
    def scale(self, name: str, n: int) -> dict:
        return self.arbiter.call("scale", name, int(n))

    @msgpack_method
    def restart_worker(self, name: str, worker_id: Any) -> dict:
        return self.arbiter.call("restart_worker", name, int(worker_id))

    @msgpack_method
    def logs(self, name: str, lines: int = 200, text: Optional[str] = None,
             level: Optional[str] = None, after: Optional[int] = None) -> dict:
        reader = self.arbiter.log_reader(name)
        entries, cursor = reader.query(lines=int(lines), text=text or None,
                                       level=level.upper() if level else None, after=after)
        return {"entries": entries, "cursor": cursor}

    @msgpack_method
    def metrics(self, name: str, since: Optional[float] = None, until: Optional[float] = None) -> dict:
        store = self.arbiter.metrics_store_for(name)
        return store.series(self.arbiter.service_name(name), since=since, until=until)

    @msgpack_method
    def set_note(self, name: str, note: Optional[str]) -> dict:
        """A short state a service reports about itself (shown as `note` in status and by
        the web monitor); None clears it."""
        if note is not None and (not isinstance(note, str) or len(note) > 200):
            raise ValueError("a note is a string of at most 200 characters, or None")
        return self.arbiter.call("set_note", name, note)

    @msgpack_method
    def reload(self) -> dict:
        """Re-read the .ini file, as SIGHUP does."""
        return self.arbiter.call("reload")
