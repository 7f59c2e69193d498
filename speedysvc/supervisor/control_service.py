"""The supervisor's control API: the one door the CLI and the web monitor go through.

Served inside the supervisor process as the speedysvc service `speedysvc_control` (shared
memory in the supervisor's scope, and loopback TCP). Its methods are made from the command
registry (speedysvc.supervisor.commands): commands that read or change the pools run on the
arbiter's main loop (`Arbiter.call`), so supervision stays single-threaded; logs and metrics
are read from their files directly. Contract: docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from typing import Any, Callable

from ..methods import ServerMethodsBase, msgpack_method
from ..naming import CONTROL_SERVICE_NAME
from .commands import COMMANDS, Command, UnknownService

__all__ = ["CONTROL_SERVICE_NAME", "ControlService", "UnknownService"]


def _method(cmd: Command) -> Callable[..., Any]:
    def method(self: "ControlService", *args: Any, **kwargs: Any) -> Any:
        return self.arbiter.call(cmd.name, *cmd.convert(args, kwargs))
    method.__name__ = method.__qualname__ = cmd.name
    method.__doc__ = cmd.help
    method.__signature__ = cmd.signature()  # type: ignore[attr-defined]  # what describe() shows
    exposed: Callable[..., Any] = msgpack_method(method)
    return exposed


class ControlService(ServerMethodsBase):
    name = CONTROL_SERVICE_NAME
    port = None

    def __init__(self, arbiter: Any = None):
        super().__init__()
        self.arbiter = arbiter


for _cmd in COMMANDS.values():
    setattr(ControlService, _cmd.name, _method(_cmd))
