"""The fake control served as a real speedysvc service named speedysvc_control, so the monitor's
production client path (LazyControl -> speedysvc.connect) can be tested over real transports."""
from __future__ import annotations

from typing import Any

from monitor_fakes import FakeControl

from speedysvc import ServerMethodsBase, msgpack_method


class FakeControlService(ServerMethodsBase):
    name = "speedysvc_control"
    port = 5154

    def __init__(self, fake: FakeControl) -> None:
        super().__init__()
        self.fake = fake

    @msgpack_method
    def status(self) -> dict[str, Any]:
        return self.fake.status()

    @msgpack_method
    def start(self, name: str) -> dict[str, Any]:
        return self.fake.start(name)

    @msgpack_method
    def stop(self, name: str) -> dict[str, Any]:
        return self.fake.stop(name)

    @msgpack_method
    def restart(self, name: str) -> dict[str, Any]:
        return self.fake.restart(name)

    @msgpack_method
    def scale(self, name: str, n: int) -> dict[str, Any]:
        return self.fake.scale(name, n)

    @msgpack_method
    def restart_worker(self, name: str, worker_id: Any) -> dict[str, Any]:
        return self.fake.restart_worker(name, worker_id)

    @msgpack_method
    def logs(self, name: str, lines: int = 200, text: str | None = None, level: str | None = None,
             after: int | None = None) -> dict[str, Any]:
        return self.fake.logs(name, lines=lines, text=text, level=level, after=after)

    @msgpack_method
    def metrics(self, name: str, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        return self.fake.metrics(name, since=since, until=until)
