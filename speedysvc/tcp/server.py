"""The TCP side of a service: connections, handshake, framing, subscriptions, draining.

A TCPServer runs calls through `run_call(request) -> reply bytes`, which its owner supplies:
each worker process serves TCP itself (workers share the port with SO_REUSEPORT, so the
kernel spreads connections across them and a call costs one hop, not two), and an
in-process service forwards to its worker threads over shared memory (tcp/gateway.py).

One thread per connection. A bad peer (garbage, truncated header, absurd length, wrong
secret, undecodable body) gets an ERROR frame where possible and its connection closed, with
the reason logged; every other connection is unaffected.

Draining (a worker retiring): stop accepting, send GOAWAY on every connection, finish the
calls in progress, and close connections once idle. A client that sees GOAWAY finishes its
call and opens its next connection elsewhere, so retiring a worker fails no call.
"""
from __future__ import annotations

import logging
import secrets as _secrets
import socket
import threading
import time
from typing import Callable, Optional

from .. import dispatch, remote_errors, serialisers
from ..errors import AuthenticationError, InsecureSerialisationRefused, ProtocolError, SpeedysvcError
from ..shm.events import ShmSubscription
from . import frames

log = logging.getLogger("speedysvc.tcp")

AUTH_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 3600.0
MAX_CONNECTIONS = 1024
DRAIN_IDLE_S = 0.3  # after GOAWAY, a connection with no call for this long is closed


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; OSError (e.g. address in use) is the caller's to report."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class _Connection:
    __slots__ = ("sock", "send_lock", "busy", "last_active", "draining")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.send_lock = threading.Lock()
        self.busy = False
        self.last_active = time.monotonic()
        self.draining = False


class TCPServer:
    def __init__(self, scope: str, service: str, listener: socket.socket,
                 run_call: Callable[[memoryview], bytes], description: Callable[[], dict], *,
                 secret: Optional[str] = None, allow_insecure: bool = False,
                 max_frame: int = frames.DEFAULT_MAX_FRAME, compression: Optional[str] = None):
        self.scope = scope
        self.service = service
        self.run_call = run_call
        self.description = description
        self.secret = secret or None
        self.allow_insecure = allow_insecure
        self.max_frame = int(max_frame)
        frames.codec_for(compression)  # ValueError for an unknown name
        # advertised in HELLO: clients that did not choose a codec use this one
        self.compression = compression if compression in frames.available_codecs() else None
        self.insecure_codes = {s.code for s in serialisers.SERIALISERS.values() if s.insecure}
        self._listener: Optional[socket.socket] = listener
        self.port: int = listener.getsockname()[1]
        self._connections: dict[socket.socket, _Connection] = {}
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._draining = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"speedysvc-tcp-{service}")

    def start(self) -> "TCPServer":
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                break
            with self._lock:
                if len(self._connections) >= MAX_CONNECTIONS or self._draining:
                    log.warning("refusing connection from %s: %s", _peer(peer),
                                "draining" if self._draining else f"{MAX_CONNECTIONS} connections open")
                    sock.close()
                    continue
                conn = self._connections[sock] = _Connection(sock)
                t = threading.Thread(target=self._serve_connection, args=(conn, peer), daemon=True)
                self._threads.add(t)
            t.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def drain(self, timeout: float) -> None:
        """Retire gracefully: no new connections, GOAWAY to each, close each once idle."""
        with self._lock:
            self._draining = True
        self._close_listener()
        with self._lock:
            conns = list(self._connections.values())
        for conn in conns:
            conn.draining = True
            try:
                with conn.send_lock:
                    frames.send_frame(conn.sock, frames.GOAWAY, 0, [])
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                conns = list(self._connections.values())
            if not conns:
                return
            now = time.monotonic()
            for conn in conns:
                if not conn.busy and now - conn.last_active >= DRAIN_IDLE_S:
                    _shutdown(conn.sock)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()
        with self._lock:
            for conn in list(self._connections.values()):
                _shutdown(conn.sock)
        if self._thread.is_alive():
            self._thread.join(5)
        for t in list(self._threads):  # their calls end (or are abandoned) before we return
            t.join(2)

    # -- one connection -------------------------------------------------------------------
    def _serve_connection(self, conn: _Connection, peer) -> None:
        sock = conn.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subscription: list = []
        reader = frames.FrameReader(sock, self.max_frame)
        try:
            self._handshake(sock, reader)
            frames.set_io_timeout(sock, IDLE_TIMEOUT_S)
            while not self._stopping.is_set():
                kind, codec, flags, request_id, body = reader.read_frame()
                conn.busy = True
                try:
                    self._answer(conn, kind, codec, flags, request_id, body, subscription)
                finally:
                    conn.busy = False
                    conn.last_active = time.monotonic()
        except (ConnectionError, socket.timeout, TimeoutError):
            pass  # peer went away or idled out: nothing to report
        except (ProtocolError, AuthenticationError) as exc:
            log.warning("closing connection from %s to %s: %s", _peer(peer), self.service, exc)
            self._send_error(sock, exc)
        except OSError as exc:
            if not (self._stopping.is_set() or conn.draining):
                log.info("connection from %s to %s failed: %s", _peer(peer), self.service, exc)
        finally:
            for sub in subscription:
                sub.set()
            with self._lock:
                self._connections.pop(sock, None)
                self._threads.discard(threading.current_thread())
            sock.close()
            self._connection_closed()

    def _answer(self, conn: _Connection, kind: int, codec: int, flags: int, request_id: int,
                body: bytearray, subscription: list) -> None:
        if kind == frames.CALL:
            reply = self._call(body)
            with conn.send_lock:
                frames.send_frame(conn.sock, frames.REPLY, request_id, [reply], (flags & 0x3) or codec)
        elif kind == frames.SUBSCRIBE:
            if not subscription:
                subscription.append(self._start_forwarding(conn))
            with conn.send_lock:
                frames.send_frame(conn.sock, frames.REPLY, request_id,
                                  [dispatch.OK_HEADER, *serialisers.CONTROL.encode("subscribed")])
        elif kind == frames.PING:
            with conn.send_lock:
                frames.send_frame(conn.sock, frames.PONG, request_id, [])
        else:
            raise ProtocolError(f"unexpected {frames.KIND_NAMES[kind]} frame from a client")

    def _connection_closed(self) -> None:
        """Hook: a connection's thread is about to end."""

    def _handshake(self, sock: socket.socket, reader: frames.FrameReader) -> None:
        nonce = _secrets.token_bytes(32)
        hello = {"version": frames.VERSION, "service": self.service, "auth": bool(self.secret),
                 "nonce": nonce, "codecs": frames.available_codecs(), "max_frame": self.max_frame,
                 "compression": self.compression}
        frames.send_frame(sock, frames.HELLO, 0, serialisers.CONTROL.encode(hello))
        if not self.secret:
            return
        frames.set_io_timeout(sock, AUTH_TIMEOUT_S)
        reader.max_frame = 4096  # nothing big before authentication
        kind, _, _, _, body = reader.read_frame()
        reader.max_frame = self.max_frame
        if kind != frames.AUTH:
            raise AuthenticationError(f"expected AUTH, got {frames.KIND_NAMES[kind]}: this service needs a secret")
        if not frames.check_auth(self.secret, nonce, body):
            raise AuthenticationError("wrong shared secret")
        frames.send_frame(sock, frames.AUTH_OK, 0, [])

    def _call(self, body: bytearray) -> bytes:
        request = memoryview(body)
        try:
            code, _, name, _ = dispatch.parse_request(request)
            if name == dispatch.DESCRIBE:  # answered here: no worker needs to be free for it
                return dispatch.OK_HEADER + serialisers.join_parts(serialisers.CONTROL.encode(self.description()))
            if code in self.insecure_codes and not self.allow_insecure:
                raise InsecureSerialisationRefused(
                    f"method {name!r} uses {serialisers.BY_CODE[code].name}, which is refused over the "
                    f"network; set force_insecure_serialisation=true for this service to allow it")
            body[1] |= dispatch.FLAG_NETWORK
            return self.run_call(request)
        except (SpeedysvcError, ConnectionError) as exc:
            return b"".join(bytes(p) for p in dispatch.Dispatcher._error_reply(exc))

    def _start_forwarding(self, conn: _Connection) -> threading.Event:
        stop = threading.Event()
        sub = ShmSubscription(self.scope, self.service)

        def forward():
            try:
                while not stop.is_set() and not self._stopping.is_set():
                    for seq, topic, topic_seq, payload in sub.poll(0.5):
                        body = serialisers.CONTROL.encode([seq, topic, topic_seq, payload])
                        with conn.send_lock:
                            frames.send_frame(conn.sock, frames.EVENT, 0, body)
            except OSError:
                pass
            finally:
                sub.close()

        threading.Thread(target=forward, daemon=True, name=f"speedysvc-events-{self.service}").start()
        return stop

    @staticmethod
    def _send_error(sock: socket.socket, exc: Exception) -> None:
        try:
            frames.set_io_timeout(sock, 1.0)
            frames.send_frame(sock, frames.ERROR, 0,
                              serialisers.CONTROL.encode(remote_errors.error_dict(type(exc), str(exc))))
        except OSError:
            pass


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _peer(peer) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
