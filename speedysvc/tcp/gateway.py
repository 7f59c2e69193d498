"""A TCP server that forwards every call, still encoded, into a service's shared-memory queue,
so any idle worker takes it. The pool's TCP front (tcp/front.py) runs one in a process of its
own; an in-process service (serve(..., in_process=True)) runs one in a thread.
"""
from __future__ import annotations

import socket
from typing import Optional

from ..shm.shm_client import SHMClient
from .server import TCPServer, listen
from .settings import TCPSettings


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

    def _connection_closed(self) -> None:
        self._client.release_thread_channel()  # each connection thread had its own channel

    def stop(self) -> None:
        super().stop()
        self._client.close()
