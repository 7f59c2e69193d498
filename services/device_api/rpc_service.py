"""RpcService: the application's side of the device API, independent of transports.

The application calls send_* from any thread. Each message is encoded in the
caller's thread (so an unserialisable event raises there), numbered per topic and
queued; one pump thread hands queued messages to every transport. Commands arrive
from transports and run on a thread pool (CommandDispatcher), so neither a slow
handler nor a slow application thread delays events or heartbeats.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .command_dispatch import CommandDispatcher
from .command_results import CommandResultStore
from .commands import ApiCommandRequest, ApiCommandRequestResponse, CommandRequestDelegate
from .errors import ServiceStateError
from .events import ApiEvent, ApiEventDict, is_emergency_kind
from .heartbeat import HeartbeatTimer
from .options import RpcOptions
from .topics import ApiTopic
from .transport import EventTransport, OutboundMessage, ReplyCallback
from .snapshot import SnapshotRecorder
from .wire_format import encode_body, heartbeat_body

log = logging.getLogger(__name__)

_CREATED, _RUNNING, _STOPPED = "created", "running", "stopped"
_STOP_PUMP = object()


class RpcService:
    def __init__(self, options: RpcOptions, transports: Sequence[EventTransport] = ()) -> None:
        self._options = options
        self._transports: List[EventTransport] = list(transports)
        self._results = CommandResultStore(options.command_result_retention, options.pending_command_timeout)
        self._dispatcher = CommandDispatcher(options.command_workers, self._results)
        self._snapshot = SnapshotRecorder(options.identifier)
        self._sequences: Dict[int, int] = {}
        self._queue: "queue.Queue[Any]" = queue.Queue()
        # Held while numbering and queueing, so queue order is sequence order.
        self._publish_lock = threading.Lock()
        self._state = _CREATED
        self._state_lock = threading.Lock()
        self._abandon_flush = threading.Event()
        self._pump = threading.Thread(target=self._pump_messages, name="device-api-pump", daemon=True)
        self._heartbeat = HeartbeatTimer(options.heartbeat_interval, self._send_heartbeat)

    # -- properties of the 0.12 interface -------------------------------------------------

    @property
    def identifier(self) -> str:
        return self._options.identifier

    @property
    def heartbeat_interval(self) -> float:
        return self._options.heartbeat_interval

    @property
    def command_request_delegate(self) -> Optional[CommandRequestDelegate]:
        return self._dispatcher.delegate

    @command_request_delegate.setter
    def command_request_delegate(self, delegate: Optional[CommandRequestDelegate]) -> None:
        self._dispatcher.delegate = delegate

    @property
    def subscriber_port(self) -> Optional[int]:
        """The bound PUB port of the ZeroMQ gateway (the real one when configured as 0)."""
        return getattr(self.transport("zmq"), "subscriber_port", None)

    @property
    def command_port(self) -> Optional[int]:
        return getattr(self.transport("zmq"), "command_port", None)

    @property
    def is_running(self) -> bool:
        return self._state == _RUNNING

    def transport(self, name: str) -> Optional[EventTransport]:
        return next((t for t in self._transports if t.name == name), None)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind every transport and begin publishing; raises TransportBindError if one cannot bind."""
        with self._state_lock:
            if self._state != _CREATED:
                raise ServiceStateError(
                    f"start() on a {self._state} service; a stopped service cannot be restarted, create a new one")
            started: List[EventTransport] = []
            try:
                for transport in self._transports:
                    transport.start(self)
                    started.append(transport)
            except BaseException:
                self._state = _STOPPED
                for transport in reversed(started):
                    _stop_quietly(transport, 0)
                self._dispatcher.close()
                raise
            self._state = _RUNNING
            self._pump.start()
            self._heartbeat.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop; events queued before the call are delivered first, within `timeout`
        seconds (default RpcOptions.stop_flush_timeout). Idempotent."""
        flush_timeout = self._options.stop_flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + flush_timeout
        with self._state_lock:
            previous, self._state = self._state, _STOPPED
        if previous != _RUNNING:
            if previous == _CREATED:
                self._dispatcher.close()
            return
        self._heartbeat.stop()
        with self._publish_lock:  # nothing can be queued behind the stop marker
            self._queue.put(_STOP_PUMP)
        self._pump.join(max(0.0, deadline - time.monotonic()))
        if self._pump.is_alive():
            log.warning("stop(): %d queued messages not delivered within %.1fs", self._queue.qsize(), flush_timeout)
            self._abandon_flush.set()
        self._dispatcher.close()
        for transport in reversed(self._transports):
            _stop_quietly(transport, max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "RpcService":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- publishing --------------------------------------------------------------------------

    def send_event_dict(self, event: Union[ApiEventDict, Mapping[str, Any]]) -> bool:
        """Publish an event on EVENT (emergency kinds also on EMERGENCY).

        Returns False when the service is stopped or the queue is full; raises
        EventSerialisationError when the event cannot be encoded as JSON.
        """
        return self.send_dict(ApiTopic.EVENT, event)

    def send_event(self, event: Optional[ApiEvent]) -> bool:
        """Publish an ApiEvent (with its `repeat` field); False for None, as 0.12."""
        if event is None:
            return False
        return self.send_dict(ApiTopic.EVENT, event)

    def send_command_result(self, response: ApiCommandRequestResponse) -> bool:
        """Publish the result of an asynchronous command on COMMAND_RESULT and keep it
        retrievable by its nonce for RpcOptions.command_result_retention seconds."""
        if response is None:
            return False
        payload, body = encode_body(response)
        accepted = self._enqueue([(ApiTopic.COMMAND_RESULT, payload, body)], kind=None)
        if accepted:
            self._results.complete(int(response.nonce), int(response.command), payload)
        return accepted

    @staticmethod
    def dictionary_to_json_bytes(obj: Any) -> bytes:
        """The UTF-8 JSON body this service publishes for `obj` (camelCase keys)."""
        return encode_body(obj)[1]

    def send_dict(self, topic: Union[ApiTopic, int], message: Any) -> bool:
        """The seed's generic call: publish `message` (a dict or dataclass) on `topic`."""
        topic = ApiTopic(int(topic))
        if topic == ApiTopic.COMMAND_RESULT and isinstance(message, ApiCommandRequestResponse):
            return self.send_command_result(message)
        if topic == ApiTopic.ANY:
            raise ValueError("ApiTopic.ANY is a subscription wildcard, not a topic to publish on")
        payload, body = encode_body(message)
        kind = payload.get("kind") if isinstance(payload, dict) else None
        targets = [(topic, payload, body)]
        if topic == ApiTopic.EVENT and is_emergency_kind(kind):
            # 0.12 peers listen for emergencies on either topic; EMERGENCY goes first.
            targets.insert(0, (ApiTopic.EMERGENCY, payload, body))
        return self._enqueue(targets, kind=kind)

    def _send_heartbeat(self) -> None:
        payload, body = encode_body(heartbeat_body(self.identifier, time.time()))
        if not self._enqueue([(ApiTopic.HEARTBEAT, payload, body)], kind=None):
            log.warning("heartbeat not queued (stopped or queue full)")

    def _enqueue(self, targets: Sequence[tuple], kind: Optional[int]) -> bool:
        with self._publish_lock:
            if self._state == _STOPPED:
                log.debug("message on topic %s dropped: the service is stopped", targets[0][0])
                return False
            if self._queue.qsize() + len(targets) > self._options.max_queued_messages:
                log.warning("message on topic %s dropped: %d messages already queued",
                            targets[0][0], self._queue.qsize())
                return False
            for topic, payload, body in targets:
                seq = self._sequences.get(topic, 0) + 1
                self._sequences[topic] = seq
                message = OutboundMessage(topic=int(topic), seq=seq, payload=payload, body=body)
                self._snapshot.record(message, kind)
                self._queue.put(message)
        return True

    def _pump_messages(self) -> None:
        while True:
            message = self._queue.get()
            if message is _STOP_PUMP or self._abandon_flush.is_set():
                return
            for transport in self._transports:
                try:
                    transport.publish(message)
                except Exception:  # one transport's failure must not silence the others
                    log.exception("transport %s failed to publish on topic %s", transport.name, message.topic)

    # -- what transports ask of the service (CommandSink) -----------------------------------

    def submit_command(self, request: ApiCommandRequest, on_reply: ReplyCallback) -> None:
        self._dispatcher.submit(request, on_reply)

    def command_result(self, nonce: int) -> dict:
        """`{nonce, state: pending|complete|unknown, command, response}` of an asynchronous command."""
        return self._results.lookup(int(nonce))

    def snapshot(self) -> dict:
        """Last heartbeat, last systemStatus event, last emergency event, per-topic sequences."""
        return self._snapshot.snapshot()


def _stop_quietly(transport: EventTransport, flush_timeout: float) -> None:
    try:
        transport.stop(flush_timeout)
    except Exception:
        log.exception("transport %s failed to stop cleanly", transport.name)

