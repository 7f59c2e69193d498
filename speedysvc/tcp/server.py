"""The TCP side of a service: connections, handshake, framing, limits, subscriptions, draining.

A TCPServer runs calls through `run_call(request) -> reply bytes`, which its owner supplies:
the pool's TCP front (tcp/front.py, a process of its own) and an in-process service's
gateway (tcp/gateway.py) both forward each call, still encoded, into the service's
shared-memory queue, where any idle worker takes it.

One thread per connection. Everything before authentication is bounded: the handshake and
every frame header must complete within `header_timeout`; a connection that has not sent a
complete frame within it is closed; the read buffer grows only with bytes actually received;
decompression stops at the frame limit. Connections are capped in total and per address;
when the cap is reached the longest-idle connection makes room (a call in progress is never
cut), so idle peers cannot lock callers out. An address whose handshakes fail is refused for
a back-off that doubles with each failure.

Draining (the front stopping): stop accepting, send GOAWAY on every connection, finish the
calls in progress, and close connections once idle.
"""
from __future__ import annotations

import logging
import os
import secrets as _secrets
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import dispatch, remote_errors, serialisers
from ..errors import (AuthenticationError, InsecureSerialisationRefused, ProtocolError, ServiceUnavailable,
                      SpeedysvcError)
from ..shm.events import ShmSubscription
from . import frames

log = logging.getLogger("speedysvc.tcp")

DRAIN_IDLE_S = 0.3        # after GOAWAY, a connection with no call for this long is closed
HANDSHAKE_MAX_FRAME = 4096  # nothing big before authentication
AUTH_BACKOFF_DOUBLINGS = 6  # the back-off grows to at most 64x tcp_auth_failure_backoff
AUTH_FAILURES_REMEMBERED = 10_000
ACCEPT_POLL_S = 0.25


@dataclass(frozen=True)
class Limits:
    """What bounds a server's connections (the tcp_* options of the .ini)."""
    header_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_connections: int = 1024
    max_connections_per_address: int = 256
    auth_failure_backoff: float = 1.0


def listen(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket; OSError (e.g. address in use) is the caller's to report.

    No SO_REUSEPORT: a port held by another deployment must fail to bind, not be shared
    with it (the kernel would split the callers between the two)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def server_tls_context(cert: str, key: Optional[str] = None, client_ca: Optional[str] = None) -> ssl.SSLContext:
    """TLS for a server: its certificate and key; with client_ca, clients must present a
    certificate signed by it (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key or None)
        if client_ca:
            ctx.load_verify_locations(cafile=client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate/key ({cert}, {key}) or client CA "
                         f"({client_ca}): {exc}") from None
    return ctx


class _Connection:
    __slots__ = ("sock", "host", "send_lock", "busy", "last_active", "draining", "established",
                 "subscribed", "closing")

    def __init__(self, sock: socket.socket, host: str):
        self.sock = sock
        self.host = host
        self.send_lock = threading.Lock()
        self.busy = False
        self.last_active = time.monotonic()
        self.draining = False
        self.established = False  # handshake done and a first complete frame received
        self.subscribed = False
        self.closing = False      # being closed to make room; no longer counted


class TCPServer:
    def __init__(self, scope: str, service: str, listener: socket.socket,
                 run_call: Callable[[memoryview], bytes], description: Callable[[], dict[str, Any]], *,
                 secret: Optional[str] = None, allow_insecure: bool = False,
                 max_frame: int = frames.DEFAULT_MAX_FRAME, compression: Optional[str] = None,
                 limits: Limits = Limits(), tls: Optional[ssl.SSLContext] = None,
                 shared_listener: bool = False):
        self.scope = scope
        self.service = service
        self.run_call = run_call
        self.description = description
        self.secret = secret or None
        self.allow_insecure = allow_insecure
        self.max_frame = int(max_frame)
        self.limits = limits
        self.tls = tls
        frames.codec_for(compression)  # ValueError for an unknown name
        # advertised in HELLO: clients that did not choose a codec use this one
        self.compression = compression if compression in frames.available_codecs() else None
        self.insecure_codes = {s.code for s in serialisers.SERIALISERS.values() if s.insecure}
        self._listener: Optional[socket.socket] = listener
        # a listener shared with the pool (the front's) must keep listening after we leave:
        # never shut it down; the accept loop waits on it and on a pipe that stopping writes to
        # (accept() keeps a timeout in case another process takes a connection first)
        self._shared_listener = shared_listener
        self._wake_r = self._wake_w = -1
        if shared_listener:
            frames.set_io_timeout(listener, ACCEPT_POLL_S)
            self._wake_r, self._wake_w = os.pipe()
        self.port: int = listener.getsockname()[1]
        self._connections: dict[socket.socket, _Connection] = {}
        self._per_address: dict[str, int] = {}
        self._auth_failures: dict[str, tuple[int, float]] = {}  # host -> (failures, refused until)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._draining = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"speedysvc-tcp-{service}")

    def start(self) -> "TCPServer":
        self._thread.start()
        return self

    # -- admission ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set() and not self._draining:
            listener = self._listener
            if listener is None:
                break
            if self._wake_r >= 0:
                try:
                    ready, _, _ = select.select([listener.fileno(), self._wake_r], [], [], ACCEPT_POLL_S)
                except (OSError, ValueError):  # closed meanwhile
                    break
                if self._wake_r in ready:
                    break
                if not ready:
                    continue
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, socket.timeout):
                continue  # the poll of a shared listener
            except OSError:
                break
            host = peer[0] if isinstance(peer, tuple) else str(peer)
            with self._lock:
                refusal = self._admit(host)
                if refusal is None:
                    conn = self._connections[sock] = _Connection(sock, host)
                    self._per_address[host] = self._per_address.get(host, 0) + 1
                    t = threading.Thread(target=self._serve_connection, args=(conn, peer), daemon=True,
                                         name=f"speedysvc-tcp-{self.service}-conn")
                    self._threads.add(t)
            if refusal is not None:
                log.warning("refusing connection from %s to %s: %s", _peer(peer), self.service, refusal[1])
                self._refuse(sock, *refusal)
                continue
            t.start()

    def _admit(self, host: str) -> Optional[tuple[type, str]]:
        """None to accept a connection from `host`, else (error class, reason). Holds _lock."""
        if self._draining:
            return ServiceUnavailable, f"{self.service} is stopping"
        failures, until = self._auth_failures.get(host, (0, 0.0))
        now = time.monotonic()
        if now < until:
            return AuthenticationError, (f"{failures} failed handshake(s) from {host}: refused for "
                                         f"{until - now:.1f}s more (tcp_auth_failure_backoff)")
        lim = self.limits
        if self._per_address.get(host, 0) >= lim.max_connections_per_address:
            if not self._make_room(host):
                return ServiceUnavailable, (f"{host} already has {lim.max_connections_per_address} connections "
                                            f"to {self.service}, all in calls (tcp_max_connections_per_address)")
        if sum(self._per_address.values()) >= lim.max_connections:
            if not self._make_room(None):
                return ServiceUnavailable, (f"{self.service} has {lim.max_connections} connections, all in "
                                            f"calls (tcp_max_connections)")
        return None

    def _make_room(self, host: Optional[str]) -> bool:
        """Close the connection (of `host`, or of anyone) idle for longest -- since its last
        call, or since it connected if it has made none -- never one in a call, subscriptions
        last. The new connection is the youngest, so it is never the one to go. Holds _lock."""
        candidates = [c for c in self._connections.values()
                      if not c.busy and not c.closing and (host is None or c.host == host)]
        if not candidates:
            return False
        victim = min(candidates, key=lambda c: (c.subscribed, c.last_active))
        log.info("closing a connection from %s to %s idle for %.1fs to make room for a new one",
                 victim.host, self.service, time.monotonic() - victim.last_active)
        self._uncount(victim)
        _shutdown(victim.sock)
        return True

    def _uncount(self, conn: _Connection) -> None:
        """Holds _lock."""
        if conn.closing:
            return
        conn.closing = True
        n = self._per_address.get(conn.host, 0) - 1
        if n > 0:
            self._per_address[conn.host] = n
        else:
            self._per_address.pop(conn.host, None)

    def _auth_failed(self, host: str) -> None:
        with self._lock:
            failures = self._auth_failures.get(host, (0, 0.0))[0] + 1
            backoff = self.limits.auth_failure_backoff * (1 << min(failures - 1, AUTH_BACKOFF_DOUBLINGS))
            self._auth_failures[host] = (failures, time.monotonic() + backoff)
            if len(self._auth_failures) > AUTH_FAILURES_REMEMBERED:  # forget the expired ones
                now = time.monotonic()
                self._auth_failures = {h: v for h, v in self._auth_failures.items()
                                       if v[1] + backoff > now}

    def _auth_succeeded(self, host: str) -> None:
        if host in self._auth_failures:
            with self._lock:
                self._auth_failures.pop(host, None)

    def _refuse(self, sock: socket.socket, cls: type, reason: str) -> None:
        """An ERROR frame instead of HELLO (plain TCP only: no TLS handshake for a refusal)."""
        if self.tls is None:
            try:
                frames.set_io_timeout(sock, 0.5)
                frames.send_frame(sock, frames.ERROR, 0,
                                  serialisers.CONTROL.encode(remote_errors.error_dict(cls, reason)))
            except OSError:
                pass
        sock.close()

    # -- stopping -------------------------------------------------------------------------
    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if self._shared_listener:  # the accept loop wakes on the pipe
            if self._wake_w >= 0:
                os.write(self._wake_w, b"\0")
            if self._thread.is_alive() and self._thread is not threading.current_thread():
                self._thread.join(2 * ACCEPT_POLL_S + 1)
        else:
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
            self._send_goaway(conn)
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
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0 and not self._thread.is_alive():
                os.close(fd)
        if not self._thread.is_alive():
            self._wake_r = self._wake_w = -1

    # -- one connection -------------------------------------------------------------------
    def _serve_connection(self, conn: _Connection, peer: Any) -> None:
        sock = conn.sock
        subscription: list[Any] = []
        lim = self.limits
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                frames.set_io_timeout(sock, lim.header_timeout)
                sock = conn.sock = self._tls_handshake(sock, self.tls)
            reader = frames.FrameReader(sock, self.max_frame, frame_timeout=lim.header_timeout)
            # until its first complete frame, a connection gets header_timeout, not idle_timeout
            reader.set_wait_timeout(lim.header_timeout)
            self._handshake(conn, reader)
            relay = self.tls is None  # a plain socket may be served by the relay hook
            while not self._stopping.is_set():
                try:
                    if (relay and conn.established and not conn.draining and not conn.subscribed
                            and reader.end == reader.start and self._relay(conn, reader)):
                        kind = None  # a whole call was served by _relay
                    else:
                        kind, codec, flags, request_id, body = reader.read_frame()
                except (socket.timeout, TimeoutError):
                    if not conn.established or conn.draining or reader.in_frame:
                        raise  # silent from the start, already told, or stalled mid-frame
                    # idle: GOAWAY, so the client's next call opens a new connection; a call
                    # that crossed the GOAWAY is still served before the connection closes
                    conn.draining = True
                    self._send_goaway(conn)
                    reader.set_wait_timeout(DRAIN_IDLE_S)
                    continue
                if not conn.established:
                    conn.established = True
                conn.busy = True
                try:
                    if kind is not None:
                        self._answer(conn, kind, codec, flags, request_id, body, subscription)
                finally:
                    conn.busy = False
                    conn.last_active = time.monotonic()
                if conn.draining:
                    reader.set_wait_timeout(DRAIN_IDLE_S)
                elif conn.subscribed:  # events flow the other way; dead peers are found by keepalive
                    reader.set_wait_timeout(None)
                elif reader.wait_timeout != lim.idle_timeout:
                    reader.set_wait_timeout(lim.idle_timeout)
        except (socket.timeout, TimeoutError):
            if not conn.established:
                log.info("closing connection from %s to %s: no complete frame within %gs "
                         "(tcp_header_timeout)", _peer(peer), self.service, lim.header_timeout)
        except ConnectionError:
            pass  # peer went away (or was closed to make room): nothing to report
        except (ProtocolError, AuthenticationError, ssl.SSLError) as exc:
            log.warning("closing connection from %s to %s: %s", _peer(peer), self.service, exc)
            if isinstance(exc, AuthenticationError):
                self._auth_failed(conn.host)
            if not isinstance(exc, ssl.SSLError):
                self._send_error(sock, exc)
        except OSError as exc:
            if not (self._stopping.is_set() or conn.draining or conn.closing):
                log.info("connection from %s to %s failed: %s", _peer(peer), self.service, exc)
        finally:
            for sub in subscription:
                sub.set()
            with self._lock:
                self._uncount(conn)
                self._connections.pop(conn.sock, None)
                self._connections.pop(sock, None)
                self._threads.discard(threading.current_thread())
            sock.close()
            self._connection_closed()

    def _tls_handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        raw = sock
        try:
            tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise socket.timeout("TLS handshake timed out") from None
        with self._lock:  # the connection is now known by its TLS socket
            conn = self._connections.pop(raw, None)
            if conn is not None:
                self._connections[tls] = conn
        return tls

    def _answer(self, conn: _Connection, kind: int, codec: int, flags: int, request_id: int,
                body: bytearray, subscription: list[Any]) -> None:
        if kind == frames.CALL:
            reply = self._call(body)
            with conn.send_lock:
                frames.send_frame(conn.sock, frames.REPLY, request_id, [reply], (flags & 0x3) or codec)
        elif kind == frames.SUBSCRIBE:
            if not subscription:
                subscription.append(self._start_forwarding(conn))
                conn.subscribed = True
                _keepalive(conn.sock)
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

    def _relay(self, conn: _Connection, reader: frames.FrameReader) -> bool:
        """Hook: serve the connection's next call by other means than read_frame() and
        _answer(); True when one was served. May leave received bytes in `reader` and return
        False; raises socket.timeout or ConnectionError as read_frame() would."""
        return False

    def _handshake(self, conn: _Connection, reader: frames.FrameReader) -> None:
        sock = conn.sock
        nonce = _secrets.token_bytes(32)
        hello = {"version": frames.VERSION, "service": self.service, "auth": bool(self.secret),
                 "nonce": nonce, "codecs": frames.available_codecs(), "max_frame": self.max_frame,
                 "compression": self.compression}
        frames.send_frame(sock, frames.HELLO, 0, serialisers.CONTROL.encode(hello))
        if not self.secret:
            return
        reader.max_frame = HANDSHAKE_MAX_FRAME
        kind, _, _, _, body = reader.read_frame()
        reader.max_frame = self.max_frame
        if kind != frames.AUTH:
            raise AuthenticationError(f"expected AUTH, got {frames.KIND_NAMES[kind]}: this service needs a secret")
        if not frames.check_auth(self.secret, nonce, body):
            raise AuthenticationError("wrong shared secret")
        self._auth_succeeded(conn.host)
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
            return error_reply(exc)

    def _start_forwarding(self, conn: _Connection) -> threading.Event:
        stop = threading.Event()
        sub = ShmSubscription(self.scope, self.service)

        def forward() -> None:
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
    def _send_goaway(conn: _Connection) -> None:
        try:
            with conn.send_lock:
                frames.send_frame(conn.sock, frames.GOAWAY, 0, [])
        except OSError:
            pass

    @staticmethod
    def _send_error(sock: socket.socket, exc: Exception) -> None:
        try:
            frames.set_io_timeout(sock, 1.0)
            frames.send_frame(sock, frames.ERROR, 0,
                              serialisers.CONTROL.encode(remote_errors.error_dict(type(exc), str(exc))))
        except OSError:
            pass


def error_reply(exc: Exception) -> bytes:
    """The encoded reply a TCP caller gets for a call that failed in the front or the pool."""
    return b"".join(bytes(p) for p in dispatch.Dispatcher.error_reply(exc))


def _keepalive(sock: socket.socket) -> None:
    """Find a subscriber whose machine vanished within about two minutes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
    except (OSError, AttributeError):
        pass


def _shutdown(sock: socket.socket) -> None:
    """Wake the thread reading `sock`: shut the connection down under it. For TLS the plain
    socket's shutdown, since SSLSocket.shutdown drops the TLS state another thread is using."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def _peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
