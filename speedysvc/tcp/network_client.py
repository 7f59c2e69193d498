"""NetworkClient: calls a service over TCP (through the pool's TCP front), optionally over TLS.

Each thread has its own connection, so calls never interleave on a socket. A call whose
request was sent but whose reply never came raises (CallTimeout, WorkerDied or
ServiceUnavailable) and is never re-sent: the connection is dropped and the next call opens
a new one.
"""
from __future__ import annotations

import itertools
import os
import queue
import select
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

if TYPE_CHECKING:
    from typing_extensions import Self

from .. import dispatch, remote_errors, serialisers
from ..errors import (AuthenticationError, CallTimeout, MethodNotFound, PayloadTooLarge, ProtocolError,
                      ServiceUnavailable, WorkerDied)
from . import frames
from ..shm import native
from ..provider import ProviderMethods
from ..subscription import Subscription

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0


# A server closes a connection on its own only after DRAIN_IDLE_S (0.3 s) without a call
# (after a GOAWAY: idle timeout, retiring front): a connection that answered more recently
# than this is not checked before the next call, saving a select() per call in a busy loop.
GOODBYE_CHECK_IDLE_S = 0.05

_read_reply = native.reply_reader()


class _Connection:
    def __init__(self, host: str, port: int, service: str, secret: Optional[str], timeout: float,
                 max_frame: int, tls: Optional[ssl.SSLContext] = None):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ServiceUnavailable(f"cannot connect to {service!r} at {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise AuthenticationError(f"the TLS certificate of {host}:{port} is not trusted: "
                                          f"{exc.verify_message or exc}") from None
            except (OSError, ssl.SSLError) as exc:
                self.close()
                raise ServiceUnavailable(f"TLS handshake with {service!r} at {host}:{port} failed: {exc}") from None
        self.ids = itertools.count(1)
        self.max_frame = max_frame
        self.reader = frames.FrameReader(self.sock, max_frame)
        self.io_timeout: Optional[float] = -1.0
        self.draining = False
        self.limit: Optional[int] = None  # the largest request frame, once known
        self.last_reply = 0.0  # time.monotonic() of the last reply read
        try:
            self.set_timeout(timeout)
            kind, _, _, _, body = self.reader.read_frame()
            if kind == frames.ERROR:  # refused (limits, back-off, stopping): say why, with its type
                raise remote_errors.dict_to_exception(serialisers.CONTROL.decode(memoryview(body)))
            if kind != frames.HELLO:
                raise ProtocolError(f"expected HELLO from {host}:{port}, got {frames.KIND_NAMES[kind]}")
            self.hello = serialisers.CONTROL.decode(memoryview(body))
            if self.hello.get("service") != service:
                raise ServiceUnavailable(f"{host}:{port} serves {self.hello.get('service')!r}, not {service!r}")
            if self.hello.get("auth"):
                if not secret:
                    raise AuthenticationError(f"{service!r} at {host}:{port} requires a shared secret")
                frames.send_frame(self.sock, frames.AUTH, 0, [frames.auth_digest(secret, self.hello["nonce"])])
                kind, _, _, _, body = self.reader.read_frame()
                if kind != frames.AUTH_OK:
                    raise AuthenticationError(f"{service!r} at {host}:{port} refused the shared secret")
        except (ConnectionError, socket.timeout) as exc:
            self.close()
            raise ServiceUnavailable(f"handshake with {service!r} at {host}:{port} failed: {exc}") from None
        except Exception:
            self.close()
            raise

    def peer_said_goodbye(self) -> bool:
        """Between calls nothing is expected from the server: anything readable now is a
        GOAWAY, an error or the connection closing."""
        if self.reader.end > self.reader.start:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def set_timeout(self, seconds: Optional[float]) -> None:
        if seconds != self.io_timeout:  # a setsockopt only when the timeout changes
            frames.set_io_timeout(self.sock, seconds)
            self.io_timeout = seconds

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def client_tls_context(tls: "bool | ssl.SSLContext | None") -> Optional[ssl.SSLContext]:
    if tls is None or tls is False:
        return None
    if tls is True:
        return ssl.create_default_context()  # verifies the server's certificate and name
    if isinstance(tls, ssl.SSLContext):
        return tls
    raise TypeError(f"tls must be True, False or an ssl.SSLContext, not {type(tls).__name__}")


class NetworkClient(ProviderMethods):
    transport = "tcp"

    def __init__(self, service: Any, host: str = "127.0.0.1", port: Optional[int] = None, *,
                 secret: Optional[str] = None, timeout: Optional[float] = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, compression: Optional[str] = None,
                 max_frame: int = frames.CLIENT_MAX_FRAME, tls: "bool | ssl.SSLContext" = False):
        """tls: True verifies the server against the system's trusted CAs (and its name); an
        ssl.SSLContext gives full control (a private CA, a client certificate for mutual TLS)."""
        self.service_name = service if isinstance(service, str) else service.service_name()
        if port is None:
            port = None if isinstance(service, str) else service.port
        if port is None:
            raise ValueError(f"no port given for {self.service_name!r} and the service class sets none")
        self.host, self.port = host, int(port)
        self.secret = secret if secret is not None else os.environ.get("SPEEDYSVC_TCP_SECRET")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.tls = client_tls_context(tls)
        self.codec = frames.codec_for(compression)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._prepared: dict[str, tuple[Any, ...]] = {}
        self._connections: list[_Connection] = []
        self.closed = False
        self.description: dict[str, Any] = self.call(dispatch.DESCRIBE)
        self.methods = {name: info["encoder"] for name, info in self.description["methods"].items()}
        hello = self._conn().hello
        if compression and compression not in hello.get("codecs", []):
            raise ValueError(f"the server does not support {compression!r} compression")
        preferred = hello.get("compression")
        if compression is None and preferred in frames.available_codecs():
            self.codec = frames.codec_for(preferred)  # the service's tcp_compression setting

    def _prepare(self, method: str) -> tuple[Any, ...]:
        """(serialiser, encoded request header and name) of a method, made once."""
        methods = getattr(self, "methods", None)
        encoder = "msgpack" if methods is None else methods.get(method)
        if encoder is None:
            if method not in (dispatch.DESCRIBE, dispatch.PING):
                raise MethodNotFound(f"service {self.service_name!r} has no method {method!r}; "
                                     f"it has: {', '.join(sorted(methods or ())) or 'none'}")
            encoder = "msgpack"
        serialiser = serialisers.SERIALISERS[encoder]
        decoder = serialisers.compiled_decoder(encoder)
        prepared = (serialiser, b"".join(dispatch.encode_request(method, serialiser.code, [])), decoder)
        if methods is not None:  # DESCRIBE, before the methods are known, is not cached
            self._prepared[method] = prepared
        return prepared

    def _conn(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self.host, self.port, self.service_name, self.secret, self.connect_timeout,
                               self.max_frame, self.tls)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    def call(self, method: str, args: Sequence[Any] = (), kwargs: Optional[dict[str, Any]] = None,
             timeout: Optional[float] = None) -> Any:
        if self.closed:
            raise ServiceUnavailable(f"client of {self.service_name!r} is closed")
        prepared = self._prepared.get(method)
        if prepared is None:
            prepared = self._prepare(method)
        serialiser, prefix, decoder = prepared
        parts = [prefix, *serialiser.encode_call(args, kwargs or {})]
        timeout = self.timeout if timeout is None else timeout
        conn = self._conn()
        if conn.draining or (time.monotonic() - conn.last_reply >= GOODBYE_CHECK_IDLE_S
                             and conn.peer_said_goodbye()):
            # the worker behind this connection is retiring: go to another one before sending
            self._drop()
            conn = self._conn()
        limit = conn.limit
        if limit is None:
            limit = conn.limit = min(self.max_frame, int(conn.hello.get("max_frame", self.max_frame)))
        size = serialisers.parts_size(parts)
        if size > limit:
            raise PayloadTooLarge(f"request to {self.service_name}.{method} is {size} bytes; the server "
                                  f"accepts frames up to {limit} bytes (tcp_max_frame_bytes)")
        request_id = next(conn.ids)
        try:
            try:
                conn.set_timeout(timeout)
                frames.send_frame(conn.sock, frames.CALL, request_id, parts, self.codec, flags=self.codec)
            except (BrokenPipeError, ConnectionResetError):
                # the server closed this connection (idle timeout, restart) before reading the
                # whole frame, so the call did not run: it is safe to send it once more
                self._drop()
                conn = self._conn()
                conn.set_timeout(timeout)
                frames.send_frame(conn.sock, frames.CALL, request_id, parts, self.codec, flags=self.codec)
        except OSError as exc:
            self._drop()
            raise ServiceUnavailable(f"could not send {method!r} to {self.service_name!r}: {exc}") from None
        try:
            reader = conn.reader
            if decoder is not None and _read_reply is not None and reader.end == reader.start \
                    and self.tls is None:
                # the steady state: one plain reply, received and decoded in C
                try:
                    result = _read_reply(conn.sock.fileno(), reader.buf, request_id & 0xFFFFFFFF, decoder)
                    conn.last_reply = time.monotonic()
                    return result
                except native.NotDecoded as unusual:  # the bytes are the FrameReader's now
                    reader.start, reader.end = 0, unusual.args[0]
            while True:
                kind, _, _, rid, body = reader.read_frame()
                if kind == frames.REPLY and rid == request_id:
                    break
                if kind == frames.GOAWAY:
                    conn.draining = True  # our call is still answered; the next goes elsewhere
                elif kind == frames.ERROR:
                    info = serialisers.CONTROL.decode(memoryview(body))
                    self._drop()
                    raise remote_errors.dict_to_exception(info)
        except socket.timeout:
            self._drop()
            raise CallTimeout(f"call {method!r} to {self.service_name!r} timed out after {timeout:g}s") from None
        except ConnectionError as exc:
            # a connection lost after the request went out: the call may have run (the
            # server's front died or the network failed), so it is not sent again
            self._drop()
            raise WorkerDied(f"connection to {self.service_name!r} lost during call {method!r} ({exc}): "
                             f"the server died or the network failed; the call was not retried") from None
        if conn.draining:
            self._drop()
        else:
            conn.last_reply = time.monotonic()
        return dispatch.decode_reply(memoryview(body), serialiser)

    def describe(self) -> dict[str, Any]:
        return self.description

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> Subscription:
        return Subscription(_TcpEventSource(self), topics)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TcpEventSource:
    """A dedicated connection receiving EVENT frames. A reader thread owns the socket, so a
    poll() that times out never leaves a frame half-read. If the connection is lost (the
    worker serving it retired or the service restarted), the reader connects and subscribes
    again by itself; `reattached` counts how often (events published meanwhile are missed)."""

    RECONNECT_EVERY_S = 0.5

    def __init__(self, client: NetworkClient):
        self.client = client
        self.max_frame = client.max_frame
        self.missed = 0
        self.reattached = 0
        self._last_seq = None
        self._events: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._closed = False
        self.conn = self._subscribe()
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="speedysvc-tcp-events")
        self._reader.start()

    def _subscribe(self) -> _Connection:
        c = self.client
        conn = _Connection(c.host, c.port, c.service_name, c.secret, c.connect_timeout, c.max_frame, c.tls)
        try:
            frames.send_frame(conn.sock, frames.SUBSCRIBE, 1, serialisers.CONTROL.encode({"topics": None}))
            while True:  # wait for the acknowledgement: events after it are ours
                kind, _, _, rid, body = conn.reader.read_frame()
                if kind == frames.REPLY and rid == 1:
                    break
            conn.set_timeout(None)
        except BaseException:
            conn.close()
            raise
        return conn

    def _read_loop(self) -> None:
        while not self._closed:
            try:
                kind, _, _, _, body = self.conn.reader.read_frame()
                if kind == frames.EVENT:
                    self._events.put(serialisers.CONTROL.decode(memoryview(body)))
                continue
            except (OSError, ProtocolError):
                if self._closed:
                    break
            self.conn.close()
            while not self._closed:  # reconnect; the next connection may reach another worker
                try:
                    self.conn = self._subscribe()
                    self.reattached += 1
                    break
                except (OSError, ServiceUnavailable, ProtocolError, AuthenticationError):
                    time.sleep(self.RECONNECT_EVERY_S)
        self._events.put(None)  # wake a waiting poll()

    def poll(self, timeout: Optional[float]) -> Iterator[tuple[int, str, int, bytes]]:
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while item is not None:
            seq, topic, topic_seq, payload = item
            if self._last_seq is not None and seq > self._last_seq + 1:
                self.missed += seq - self._last_seq - 1
            self._last_seq = seq
            yield seq, topic, topic_seq, payload
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return

    def wake(self) -> None:
        self._events.put(None)

    def close(self) -> None:
        self._closed = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self._reader.join(2)
