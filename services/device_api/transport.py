"""The contract between the transport-agnostic RpcService and each transport
(ZeroMQ gateway, speedysvc adapter)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .command_reply import CommandReply
from .commands import ApiCommandRequest


@dataclass(frozen=True)
class OutboundMessage:
    """One published message, encoded once and fanned out to every transport."""

    topic: int
    seq: int  # per topic, starting at 1
    payload: Any  # JSON-compatible, camelCase keys
    body: bytes  # the UTF-8 JSON of payload, as sent on ZeroMQ


ReplyCallback = Callable[[CommandReply], None]


class CommandSink(Protocol):
    """What a transport may ask of the service. Every method returns quickly;
    command handlers never run on the caller's thread."""

    def submit_command(self, request: ApiCommandRequest, on_reply: ReplyCallback) -> None: ...

    def command_result(self, nonce: int) -> dict: ...

    def snapshot(self) -> dict: ...


class EventTransport(Protocol):
    name: str

    def start(self, sink: CommandSink) -> None:
        """Bind and begin serving; raise TransportBindError if an address is taken."""

    def publish(self, message: OutboundMessage) -> None:
        """Hand over a message; must not block on the network."""

    def stop(self, flush_timeout: float) -> None:
        """Deliver what publish() was given (bounded by flush_timeout), then release everything."""
