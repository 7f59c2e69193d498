"""The ZeroMQ gateway: speaks the auto-trainer-api 0.12 wire protocol so existing
remote peers (SUB on the PUB port, REQ on the command port) work unchanged.

One I/O thread owns both sockets. The command socket is a ROUTER rather than the
original's REP: it is wire-compatible with REQ peers, but lets the thread take the
next request while earlier handlers are still running on the dispatcher's pool, and
send each reply whenever it is ready.

Besides 0.12 command requests the command socket answers two queries, recognised by
having a "request" key and no "command" key (0.12 answers them UNRECOGNIZED):
  {"request": "snapshot"}                  -> RpcService.snapshot()
  {"request": "commandResult", "nonce": n} -> RpcService.command_result(n)
"""
from __future__ import annotations

import collections
import logging
import os
import threading
from typing import Deque, List, Optional, Tuple

import zmq

from .command_reply import malformed_request_reply
from .curve_auth import make_curve_server, start_authenticator, validate_curve_options
from .errors import MalformedCommandRequest, TransportBindError
from .options import RpcOptions
from .topics import topic_frame
from .transport import CommandSink, OutboundMessage
from .wire_format import command_request_from_wire, encode_json, parse_json_object

log = logging.getLogger(__name__)

_QUERY_KEY = "request"


def _endpoint(explicit: Optional[str], host: str, port: int) -> str:
    if explicit:
        return explicit
    # libzmq spells "any free port" as '*'.
    return f"tcp://{host}:{port if port else '*'}"


def _port_of(endpoint: str) -> Optional[int]:
    if not endpoint.startswith("tcp://"):
        return None
    return int(endpoint.rsplit(":", 1)[1])


class ZmqGateway:
    name = "zmq"

    def __init__(self, options: RpcOptions) -> None:
        self._options = options.zmq
        self._publisher_address = _endpoint(self._options.publisher_endpoint, self._options.bind_host,
                                            options.subscriber_port)
        self._command_address = _endpoint(self._options.command_endpoint, self._options.bind_host, options.command_port)
        self._context: Optional[zmq.Context] = None
        self._authenticator = None
        self._publisher: Optional[zmq.Socket] = None
        self._commands: Optional[zmq.Socket] = None
        self._sink: Optional[CommandSink] = None
        self._outbound: Deque[OutboundMessage] = collections.deque()
        self._replies: Deque[Tuple[List[bytes], bytes]] = collections.deque()
        self._wake_read, self._wake_write = -1, -1
        self._stopping = threading.Event()
        self._linger_ms = 0
        self._thread: Optional[threading.Thread] = None
        self.publisher_endpoint: Optional[str] = None
        self.command_endpoint: Optional[str] = None

    @property
    def subscriber_port(self) -> Optional[int]:
        return _port_of(self.publisher_endpoint) if self.publisher_endpoint else None

    @property
    def command_port(self) -> Optional[int]:
        return _port_of(self.command_endpoint) if self.command_endpoint else None

    # -- EventTransport ------------------------------------------------------------------------

    def start(self, sink: CommandSink) -> None:
        self._sink = sink
        if self._options.curve is not None:
            validate_curve_options(self._options.curve)
        self._context = zmq.Context()
        try:
            if self._options.curve is not None:
                self._authenticator = start_authenticator(self._context, self._options.curve)
            self._publisher = self._bound_socket(zmq.PUB, self._publisher_address)
            self._publisher.sndhwm = self._options.send_high_water_mark
            self._commands = self._bound_socket(zmq.ROUTER, self._command_address)
        except BaseException:
            self._release(linger_ms=0)
            raise
        self.publisher_endpoint = self._publisher.getsockopt_string(zmq.LAST_ENDPOINT)
        self.command_endpoint = self._commands.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._thread = threading.Thread(target=self._serve, name="device-api-zmq", daemon=True)
        self._thread.start()
        log.info("ZeroMQ gateway: events on %s, commands on %s", self.publisher_endpoint, self.command_endpoint)

    def publish(self, message: OutboundMessage) -> None:
        if self._stopping.is_set():
            return
        self._outbound.append(message)
        self._wake()

    def stop(self, flush_timeout: float) -> None:
        if self._thread is None:
            return
        self._linger_ms = int(flush_timeout * 1000)
        self._stopping.set()
        self._wake()
        # The thread sends what is queued, then closes the sockets with a linger of
        # flush_timeout so the kernel buffers reach subscribers before term().
        self._thread.join()
        self._thread = None
        self._release(linger_ms=self._linger_ms)
        os.close(self._wake_read)
        os.close(self._wake_write)

    # -- socket set-up -------------------------------------------------------------------------

    def _bound_socket(self, kind: int, address: str) -> zmq.Socket:
        sock = self._context.socket(kind)
        try:
            if self._options.curve is not None:
                make_curve_server(sock, self._options.curve)
            sock.bind(address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise TransportBindError(f"ZeroMQ gateway cannot bind {address}: {exc}") from exc
        return sock

    def _release(self, linger_ms: int) -> None:
        for sock in (self._publisher, self._commands):
            if sock is not None and not sock.closed:
                sock.close(linger=linger_ms)
        self._publisher = self._commands = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._context is not None:
            self._context.term()
            self._context = None

    # -- the I/O thread ------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so the I/O thread is already due to wake
        except OSError:
            pass  # closed during stop

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._commands, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                ready = dict(poller.poll())
                if self._wake_read in ready:
                    self._drain_wake_pipe()
                if self._commands in ready:
                    self._receive_requests()
                self._send_queued()
            self._send_queued()
        except Exception:
            log.exception("ZeroMQ gateway I/O thread failed")
        finally:
            # Sockets belong to this thread; close them here (linger flushes the rest).
            for sock in (self._publisher, self._commands):
                if sock is not None:
                    sock.close(linger=self._linger_ms)

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _send_queued(self) -> None:
        while self._outbound:
            message = self._outbound.popleft()
            frames = [topic_frame(message.topic), message.body]
            if self._options.sequence_frame:
                frames.append(message.seq.to_bytes(8, "little"))
            self._publisher.send_multipart(frames, copy=False)
        while self._replies:
            envelope, body = self._replies.popleft()
            try:
                self._commands.send_multipart(envelope + [body], flags=zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # peer gone or its queue full: REQ will time out
                log.info("could not deliver a command reply: %s", exc)

    def _receive_requests(self) -> None:
        while True:
            try:
                frames = self._commands.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                delimiter = frames.index(b"")
            except ValueError:
                log.info("dropped a command message without an envelope delimiter (not a REQ peer)")
                continue
            envelope, body = frames[: delimiter + 1], frames[delimiter + 1:]
            self._handle_request(envelope, body)

    def _handle_request(self, envelope: List[bytes], body: List[bytes]) -> None:
        try:
            if len(body) != 1:
                raise MalformedCommandRequest(f"a command request is one frame, got {len(body)}")
            obj = parse_json_object(body[0])
            if isinstance(obj, dict) and "command" not in obj and _QUERY_KEY in obj:
                self._replies.append((envelope, encode_json(self._answer_query(obj))))
                return
            request = command_request_from_wire(obj)
        except MalformedCommandRequest as exc:
            # Answered here, without the application's handler ever seeing it.
            self._replies.append((envelope, encode_json(malformed_request_reply(exc).to_wire())))
            return
        self._sink.submit_command(request, lambda reply: self._queue_reply(envelope, encode_json(reply.to_wire())))

    def _answer_query(self, query: dict) -> dict:
        kind = query.get(_QUERY_KEY)
        if kind == "snapshot":
            return self._sink.snapshot()
        if kind == "commandResult":
            nonce = query.get("nonce")
            if isinstance(nonce, int) and not isinstance(nonce, bool):
                return self._sink.command_result(nonce)
            return {"error": "commandResult needs an integer 'nonce'"}
        return {"error": f"unknown request {kind!r}; known: 'snapshot', 'commandResult'"}

    def _queue_reply(self, envelope: List[bytes], body: bytes) -> None:
        self._replies.append((envelope, body))
        self._wake()
