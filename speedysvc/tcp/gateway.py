"""A TCP server that forwards every call, still encoded, into a service's shared-memory queue,
so any idle worker takes it. The pool's TCP front (tcp/front.py) runs one in a process of its
own; an in-process service (serve(..., in_process=True)) runs one in a thread.
"""
from __future__ import annotations

import socket
import threading
from typing import Any, Optional

from .. import dispatch
from ..errors import SpeedysvcError
from ..shm import native
from ..shm.shm_client import SHMClient
from . import frames
from .server import TCPServer, _Connection, error_reply, listen
from .settings import TCPSettings

_DESCRIBE = dispatch.DESCRIBE.encode()


class TCPGateway(TCPServer):
    def __init__(self, scope: str, service: str, settings: TCPSettings, *,
                 listener: Optional[socket.socket] = None, shared_listener: bool = False,
                 allow_insecure: Optional[bool] = None, connect_timeout: float = 30.0,
                 call_timeout: Optional[float] = None):
        tls = settings.tls_context()  # ValueError for unreadable certificates, before anything opens
        self._client = SHMClient(service, scope, timeout=call_timeout, connect_timeout=connect_timeout)
        try:
            if listener is None:
                listener = listen(settings.host, settings.port)  # OSError when the address is taken
        except OSError:
            self._client.close()
            raise
        if allow_insecure is None:  # as the pool described the service
            allow_insecure = bool(self._client.description.get("allow_insecure_serialisation"))
        super().__init__(scope, service, listener, self._client.call_raw, self._client.describe,
                         secret=settings.secret, allow_insecure=allow_insecure, shared_listener=shared_listener,
                         max_frame=settings.max_frame, compression=settings.compression,
                         limits=settings.limits, tls=tls)

        # the compiled relay (_fastpath.relay): each connection thread has its own channel,
        # so its own Route; codes the network may not use go to Python, which words the refusal
        self._compiled = native.ext() if self._client.segment.fast is not None else None
        self._routes = threading.local()
        self._refused = 0 if self.allow_insecure else sum(1 << code for code in self.insecure_codes if code < 64)

    def _relay(self, conn: _Connection, reader: frames.FrameReader) -> bool:
        """A plain call, whole, below the interpreter: the frame read, the request forwarded
        into the queue, the reply written back (see _fastpath.c, relay). Everything else is
        left to the Python path: bytes received go to `reader`, a sent call that needs
        checking on its worker (or an overflow reply) is finished here."""
        if self._compiled is None:
            return False
        route = getattr(self._routes, "route", None)
        if route is None:
            route = self._routes.route = native.route()
        if not route.armed() and not self._client.arm_route(route):
            return False  # the Python path makes this thread's channel; armed next time
        out: Any = self._compiled.relay(route, conn, conn.sock.fileno(), reader.buf, self.max_frame,
                                        self._refused, conn.send_lock, _DESCRIBE)
        if out is None:
            return True
        if out.__class__ is int:
            if out > 0:  # not one plain call: the FrameReader takes it from here
                reader.start, reader.end = 0, out
            elif out == 0:
                raise ConnectionError("connection closed")
            elif out == -1:
                raise socket.timeout("timed out")
            return False  # interrupted (-2), or the route was not armed (-10): nothing was read
        if len(out) == 2:  # the reply, while another thread held the send lock
            reply, request_id = out
        else:
            code, seq, request_id, length = out
            try:
                reply = self._client.resume_raw(code, seq, memoryview(reader.buf)[frames.HEADER_SIZE:
                                                                                  frames.HEADER_SIZE + length])
            except (SpeedysvcError, ConnectionError) as exc:
                reply = error_reply(exc)
        with conn.send_lock:
            frames.send_frame(conn.sock, frames.REPLY, request_id, [reply])
        return True

    def _connection_closed(self) -> None:
        self._client.release_thread_channel()  # each connection thread had its own channel

    def stop(self) -> None:
        super().stop()
        self._client.close()
