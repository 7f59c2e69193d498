"""The speedysvc transport: the device API as a speedysvc service, either served
in-process by the device application (SpeedysvcTransport) or attached to an
instance that a speedysvc worker already serves (AttachedSpeedysvcTransport).

speedysvc clients (shared memory or TCP) call DeviceApiMethods' msgpack methods and
subscribe to its events. Requests and replies are the same dicts as on the ZeroMQ
wire (camelCase keys); each published event is

    topic "<ApiTopic value>" (e.g. "4001"), payload {"topic": 4001, "seq": n, "message": {...}}

where `seq` is the device API's per-topic sequence number (the same number the
ZeroMQ gateway can send) and `message` the event body.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, InvalidStateError, TimeoutError as FutureTimeout
from typing import Any, Dict, Optional

from speedysvc import ServerMethodsBase, msgpack_method, serve
from speedysvc.errors import PayloadTooLarge

from .command_reply import CommandReply, malformed_request_reply, system_error_reply
from .commands import ApiCommandRequest, ApiCommandRequestResult
from .errors import DeviceApiError, MalformedCommandRequest, TransportBindError
from .options import RpcOptions
from .topics import ApiTopic
from .transport import CommandSink, OutboundMessage
from .wire_format import command_request_from_wire

log = logging.getLogger(__name__)

DEFAULT_COMMAND_WAIT = 30.0


class CommandStillRunning(DeviceApiError, TimeoutError):
    """The handler has not answered within the wait given to send_command; it keeps running."""


def speedysvc_topic(topic: int) -> str:
    """The speedysvc topic name of an ApiTopic: its decimal value."""
    return str(int(topic))


class DeviceNotAttached(DeviceApiError, RuntimeError):
    """A method was called before the device application attached its RpcService."""


class DeviceApiMethods(ServerMethodsBase):
    """The device API's speedysvc methods. The RpcService answering them is attached
    when a transport starts, so the same class works served in the device process
    (SpeedysvcTransport) or as a supervisor worker that runs the device itself."""

    def __init__(self, logger_client: Any = None) -> None:
        super().__init__(logger_client)
        self._sink: Optional[CommandSink] = None
        # Calls waiting for a handler, answered UNAVAILABLE on detach so stopping the
        # device does not wait for the slowest handler.
        self._waiting: Dict["Future[CommandReply]", ApiCommandRequest] = {}
        self._waiting_lock = threading.Lock()

    def attach(self, sink: Optional[CommandSink]) -> None:
        """Answer calls with `sink`; None detaches and releases the calls still waiting."""
        self._sink = sink
        if sink is None:
            with self._waiting_lock:
                waiting, self._waiting = self._waiting, {}
            for future, request in waiting.items():
                _resolve(future, system_error_reply(request, ApiCommandRequestResult.UNAVAILABLE,
                                                    "the device API stopped before the command finished"))

    def _attached(self) -> CommandSink:
        if self._sink is None:
            raise DeviceNotAttached("the device API service is not running (its RpcService is not started)")
        return self._sink

    @msgpack_method
    def send_command(self, request: dict, wait: float = DEFAULT_COMMAND_WAIT) -> dict:
        """A 0.12 request `{command, customCommand, nonce, data}` -> its reply dict.

        Waits for the handler up to `wait` seconds, then raises CommandStillRunning.
        """
        sink = self._attached()
        try:
            parsed = command_request_from_wire(request)
        except MalformedCommandRequest as exc:
            return malformed_request_reply(exc).to_wire()
        reply: "Future[CommandReply]" = Future()
        with self._waiting_lock:
            self._waiting[reply] = parsed
        try:
            sink.submit_command(parsed, lambda result: _resolve(reply, result))
            return reply.result(timeout=wait).to_wire()
        except FutureTimeout:
            raise CommandStillRunning(
                f"command {parsed.command} nonce {parsed.nonce} did not answer within {wait:g}s; "
                "it is still running") from None
        finally:
            with self._waiting_lock:
                self._waiting.pop(reply, None)

    @msgpack_method
    def get_command_result(self, nonce: int) -> dict:
        """`{nonce, state: pending|complete|unknown, command, response}` of an asynchronous command."""
        return self._attached().command_result(int(nonce))

    @msgpack_method
    def snapshot(self) -> dict:
        """Last heartbeat, status and emergency events, and the last sequence number of each topic."""
        return self._attached().snapshot()

    @msgpack_method
    def topics(self) -> dict:
        """Topic names -> the speedysvc topic to subscribe to."""
        return {topic.name: speedysvc_topic(topic) for topic in ApiTopic if topic != ApiTopic.ANY}


class DeviceApiService(DeviceApiMethods):
    """Served in the device application's process with serve(instance, in_process=True)."""

    name = "device_api"


def _resolve(future: "Future[CommandReply]", reply: CommandReply) -> None:
    try:
        future.set_result(reply)
    except InvalidStateError:  # already answered (the handler finished as the device stopped)
        pass


def publish_message(instance: ServerMethodsBase, message: OutboundMessage) -> None:
    """Publish one device API message through a served speedysvc instance."""
    payload = {"topic": message.topic, "seq": message.seq, "message": message.payload}
    try:
        instance.publish(speedysvc_topic(message.topic), payload)
    except PayloadTooLarge as exc:
        # Subscribers still see the sequence number, so they know what they missed.
        log.warning("event %s#%s too large for speedysvc (%s); publishing a marker", message.topic, message.seq, exc)
        instance.publish(speedysvc_topic(message.topic), {
            "topic": message.topic, "seq": message.seq, "message": None,
            "error": f"event of {len(message.body)} bytes exceeds the speedysvc event size"})


class SpeedysvcTransport:
    name = "speedysvc"

    def __init__(self, options: RpcOptions) -> None:
        self._options = options.speedysvc
        self._exit_stack: Optional[contextlib.ExitStack] = None
        self._service: Optional[DeviceApiService] = None
        self._running: Any = None

    @property
    def shm_address(self) -> Optional[str]:
        return self._running.shm_address if self._running is not None else None

    @property
    def tcp_address(self) -> Optional[str]:
        return self._running.tcp_address if self._running is not None else None

    @property
    def scope(self) -> Optional[str]:
        return self._running.scope if self._running is not None else None

    def start(self, sink: CommandSink) -> None:
        self._service = DeviceApiService()
        self._service.attach(sink)
        stack = contextlib.ExitStack()
        try:
            self._running = stack.enter_context(serve(
                self._service, workers=self._options.workers, in_process=True, scope=self._options.scope,
                tcp=self._options.tcp, name=self._options.service_name))
        except OSError as exc:
            stack.close()
            raise TransportBindError(f"speedysvc transport for {self._options.service_name!r} "
                                     f"cannot bind {self._options.tcp}: {exc}") from exc
        self._exit_stack = stack
        log.info("speedysvc transport: %s%s", self.shm_address,
                 f" and {self.tcp_address}" if self.tcp_address else "")

    def publish(self, message: OutboundMessage) -> None:
        if self._running is not None:
            publish_message(self._service, message)

    def stop(self, flush_timeout: float) -> None:
        # Publishing into the shared-memory ring is synchronous: nothing is left to flush.
        running, self._running = self._running, None
        if self._service is not None:
            self._service.attach(None)
        stack, self._exit_stack = self._exit_stack, None
        if stack is None or running is None:
            return
        try:
            stack.close()
        except ValueError:
            # Workaround for a speedysvc core race: the in-process TCP gateway closes its
            # shared-memory channels while a connection thread still uses one, and the
            # error aborts RunningService.stop() half-way. A second stop() finishes the
            # rest (worker threads, segments) as the gateway is already closed.
            log.warning("speedysvc stop was interrupted by the TCP gateway; finishing it", exc_info=True)
            running.stop()


class AttachedSpeedysvcTransport:
    """Publishes through a DeviceApiMethods instance that speedysvc already serves
    (a supervisor worker running the device application in on_start)."""

    name = "speedysvc"

    def __init__(self, instance: DeviceApiMethods) -> None:
        self._instance = instance
        self._attached = False

    def start(self, sink: CommandSink) -> None:
        self._instance.attach(sink)
        self._attached = True

    def publish(self, message: OutboundMessage) -> None:
        if self._attached:
            publish_message(self._instance, message)

    def stop(self, flush_timeout: float) -> None:
        self._attached = False
        self._instance.attach(None)
