"""TCP for a service whose workers are threads of one process (serve(..., in_process=True)):
each call is forwarded to the worker threads over shared memory, so any idle one takes it.

Worker processes serve TCP themselves instead (see worker_main and tcp/server.py).
"""
from __future__ import annotations

from typing import Optional

from ..shm.shm_client import SHMClient
from . import frames
from .server import TCPServer, listen


class TCPGateway(TCPServer):
    def __init__(self, scope: str, service: str, host: str = "127.0.0.1", port: int = 0, *,
                 secret: Optional[str] = None, allow_insecure: bool = False,
                 max_frame: int = frames.DEFAULT_MAX_FRAME, compression: Optional[str] = None,
                 connect_timeout: float = 30.0, call_timeout: Optional[float] = None):
        self._client = SHMClient(service, scope, timeout=call_timeout, connect_timeout=connect_timeout)
        try:
            listener = listen(host, port)  # OSError when the address is taken
        except OSError:
            self._client.close()
            raise
        super().__init__(scope, service, listener, self._client.call_raw, self._client.describe,
                         secret=secret, allow_insecure=allow_insecure, max_frame=max_frame,
                         compression=compression)

    def _connection_closed(self) -> None:
        self._client.release_thread_channel()  # each connection thread had its own channel

    def stop(self) -> None:
        super().stop()
        self._client.close()
