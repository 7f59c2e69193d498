"""The TCP gateway: accepts connections and forwards each call to the service's pool over
shared memory, so any idle worker takes it (the same queue local clients use).

One thread per connection; a bad peer (garbage, truncated header, absurd length, wrong
secret, undecodable body) gets an ERROR frame where possible and its connection closed, with
the reason logged; every other connection is unaffected.

Run standalone: python -m speedysvc.tcp.gateway --scope S --service NAME --host H --port P
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets as _secrets
import signal
import socket
import sys
import threading
from typing import Optional

from .. import dispatch, naming, remote_errors, serialisers
from ..errors import (AuthenticationError, InsecureSerialisationRefused, ProtocolError,
                      SpeedysvcError)
from ..shm.events import ShmSubscription
from ..shm.shm_client import SHMClient
from . import frames

log = logging.getLogger("speedysvc.tcp")

AUTH_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 3600.0
MAX_CONNECTIONS = 1024


class TCPGateway:
    def __init__(self, scope: str, service: str, host: str = "127.0.0.1", port: int = 0, *,
                 secret: Optional[str] = None, allow_insecure: bool = False,
                 max_frame: int = frames.DEFAULT_MAX_FRAME, connect_timeout: float = 30.0,
                 call_timeout: Optional[float] = None, compression: Optional[str] = None):
        self.scope = scope
        self.service = service
        self.host = host
        self.requested_port = port
        self.secret = secret or None
        self.allow_insecure = allow_insecure
        self.max_frame = int(max_frame)
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        frames.codec_for(compression)  # ValueError for an unknown name
        # advertised in HELLO: clients that did not choose a codec use this one
        self.compression = compression if compression in frames.available_codecs() else None
        self.port: Optional[int] = None
        self._listener: Optional[socket.socket] = None
        self._client: Optional[SHMClient] = None
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.insecure_codes = {s.code for s in serialisers.SERIALISERS.values() if s.insecure}

    def start(self) -> None:
        """Bind (raises OSError when the address is taken) and serve in a background thread."""
        self._client = SHMClient(self.service, self.scope, timeout=self.call_timeout,
                                 connect_timeout=self.connect_timeout)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            self._client.close()
            raise
        self._listener = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name=f"speedysvc-tcp-{self.service}",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                break
            with self._lock:
                if len(self._connections) >= MAX_CONNECTIONS:
                    log.warning("refusing connection from %s: %d connections open", peer, MAX_CONNECTIONS)
                    conn.close()
                    continue
                self._connections.add(conn)
            t = threading.Thread(target=self._serve_connection, args=(conn, peer), daemon=True)
            self._threads.add(t)
            t.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(5)
        for t in list(self._threads):  # their calls end (or are abandoned) before we unmap
            t.join(2)
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one connection -------------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket, peer) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_lock = threading.Lock()
        subscription: list = []
        reader = frames.FrameReader(conn, self.max_frame)
        try:
            self._handshake(conn, reader)
            frames.set_io_timeout(conn, IDLE_TIMEOUT_S)
            while not self._stopping.is_set():
                kind, codec, flags, request_id, body = reader.read_frame()
                if kind == frames.CALL:
                    reply = self._call(body)
                    with send_lock:
                        frames.send_frame(conn, frames.REPLY, request_id, [reply], (flags & 0x3) or codec)
                elif kind == frames.SUBSCRIBE:
                    if not subscription:
                        subscription.append(self._start_forwarding(conn, send_lock))
                    with send_lock:
                        frames.send_frame(conn, frames.REPLY, request_id,
                                          [dispatch.REPLY_HEADER.pack(dispatch.STATUS_OK),
                                           *serialisers.CONTROL.encode("subscribed")])
                elif kind == frames.PING:
                    with send_lock:
                        frames.send_frame(conn, frames.PONG, request_id, [])
                else:
                    raise ProtocolError(f"unexpected {frames.KIND_NAMES[kind]} frame from a client")
        except (ConnectionError, socket.timeout, TimeoutError):
            pass  # peer went away or idled out: nothing to report
        except (ProtocolError, AuthenticationError) as exc:
            log.warning("closing connection from %s to %s: %s", _peer(peer), self.service, exc)
            self._send_error(conn, exc)
        except OSError as exc:
            if not self._stopping.is_set():
                log.info("connection from %s to %s failed: %s", _peer(peer), self.service, exc)
        finally:
            for sub in subscription:
                sub.set()
            with self._lock:
                self._connections.discard(conn)
                self._threads.discard(threading.current_thread())
            conn.close()
            if self._client is not None:
                self._client.release_thread_channel()

    def _handshake(self, conn: socket.socket, reader: frames.FrameReader) -> None:
        nonce = _secrets.token_bytes(32)
        hello = {"version": frames.VERSION, "service": self.service, "auth": bool(self.secret),
                 "nonce": nonce, "codecs": frames.available_codecs(), "max_frame": self.max_frame,
                 "compression": self.compression}
        frames.send_frame(conn, frames.HELLO, 0, serialisers.CONTROL.encode(hello))
        if not self.secret:
            return
        frames.set_io_timeout(conn, AUTH_TIMEOUT_S)
        reader.max_frame = 4096  # nothing big before authentication
        kind, _, _, _, body = reader.read_frame()
        reader.max_frame = self.max_frame
        if kind != frames.AUTH:
            raise AuthenticationError(f"expected AUTH, got {frames.KIND_NAMES[kind]}: this service needs a secret")
        if not frames.check_auth(self.secret, nonce, body):
            raise AuthenticationError("wrong shared secret")
        frames.send_frame(conn, frames.AUTH_OK, 0, [])

    def _call(self, body: bytearray) -> bytes:
        request = memoryview(body)
        try:
            code, _, name, _ = dispatch.parse_request(request)
            if name == dispatch.DESCRIBE:  # answered here: no worker needs to be free for it
                return dispatch.OK_HEADER + serialisers.join_parts(
                    serialisers.CONTROL.encode(self._client.describe()))
            if code in self.insecure_codes and not self.allow_insecure:
                raise InsecureSerialisationRefused(
                    f"method {name!r} uses {serialisers.BY_CODE[code].name}, which is refused over the "
                    f"network; set force_insecure_serialisation=true for this service to allow it")
            body[1] |= dispatch.FLAG_NETWORK
            reply = self._client.call_raw(request)
        except (SpeedysvcError, ConnectionError) as exc:
            reply = b"".join(bytes(p) for p in dispatch.Dispatcher._error_reply(exc))
        return reply

    def _start_forwarding(self, conn: socket.socket, send_lock: threading.Lock) -> threading.Event:
        stop = threading.Event()
        sub = ShmSubscription(self.scope, self.service)

        def forward():
            try:
                while not stop.is_set() and not self._stopping.is_set():
                    for seq, topic, topic_seq, payload in sub.poll(0.5):
                        body = serialisers.CONTROL.encode([seq, topic, topic_seq, payload])
                        with send_lock:
                            frames.send_frame(conn, frames.EVENT, 0, body)
            except OSError:
                pass
            finally:
                sub.close()

        threading.Thread(target=forward, daemon=True, name=f"speedysvc-events-{self.service}").start()
        return stop

    @staticmethod
    def _send_error(conn: socket.socket, exc: Exception) -> None:
        try:
            conn.settimeout(1.0)
            frames.send_frame(conn, frames.ERROR, 0,
                              serialisers.CONTROL.encode(remote_errors.error_dict(type(exc), str(exc))))
        except OSError:
            pass


def gateway_command(scope: str, service: str, host: str, port: int, *, secret: Optional[str],
                    allow_insecure: bool, max_frame: int = frames.DEFAULT_MAX_FRAME,
                    compression: Optional[str] = None) -> tuple[list[str], dict]:
    """Command line and environment of a gateway process. The secret travels in the
    environment, never on the command line, where ps would show it."""
    cmd = [sys.executable, "-m", "speedysvc.tcp.gateway", "--scope", scope, "--service", service,
           "--host", host, "--port", str(port), "--parent-pid", str(os.getpid()),
           "--max-frame", str(max_frame)]
    if allow_insecure:
        cmd.append("--allow-insecure")
    if compression and compression != "none":
        cmd += ["--compression", compression]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path, env.get("PYTHONPATH", "")] if p)
    env.pop("SPEEDYSVC_TCP_SECRET", None)
    if secret:
        env["SPEEDYSVC_TCP_SECRET"] = secret
    return cmd, env


def _peer(peer) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="speedysvc.tcp.gateway")
    parser.add_argument("--scope", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--allow-insecure", action="store_true")
    parser.add_argument("--max-frame", type=int, default=frames.DEFAULT_MAX_FRAME)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--compression", choices=sorted(frames.CODEC_BY_NAME), default=None)
    args = parser.parse_args(argv)
    from ..worker_main import die_with_parent
    die_with_parent()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [{args.service} tcp pid %(process)d] %(message)s")
    gateway = TCPGateway(args.scope, args.service, args.host, args.port,
                         secret=os.environ.pop("SPEEDYSVC_TCP_SECRET", None),
                         allow_insecure=args.allow_insecure, max_frame=args.max_frame,
                         compression=args.compression)
    try:
        gateway.start()
    except OSError as exc:
        print(f"ERROR {exc}", flush=True)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (see worker_main)
    print(f"LISTENING {gateway.port}", flush=True)
    while not stop.wait(1.0):
        if args.parent_pid and not naming.pid_alive(args.parent_pid):
            break
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
