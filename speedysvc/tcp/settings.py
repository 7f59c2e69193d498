"""How a service serves TCP: the tcp_* options of the .ini (and serve()'s tcp_options)."""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from . import frames
from .server import Limits, server_tls_context


@dataclass(frozen=True)
class TCPSettings:
    host: str = "127.0.0.1"
    port: int = 0                      # 0: any free port, chosen when the pool opens
    secret: Optional[str] = field(default=None, repr=False)
    max_frame: int = frames.DEFAULT_MAX_FRAME
    compression: Optional[str] = None
    drain_timeout: float = 10.0
    header_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_connections: int = 1024
    max_connections_per_address: int = 256
    auth_failure_backoff: float = 1.0
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_client_ca: Optional[str] = None

    def __post_init__(self) -> None:
        frames.codec_for(self.compression)  # ValueError naming the codec
        if (self.tls_key or self.tls_client_ca) and not self.tls_cert:
            raise ValueError("tcp_tls_key and tcp_tls_client_ca need tcp_tls_cert (the server's certificate)")
        for name in ("header_timeout", "idle_timeout", "auth_failure_backoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"tcp {name} must not be negative, found {getattr(self, name)!r}")
        for name in ("max_connections", "max_connections_per_address", "max_frame"):
            if getattr(self, name) < 1:
                raise ValueError(f"tcp {name} must be at least 1, found {getattr(self, name)!r}")

    @classmethod
    def from_options(cls, host: str, port: int, secret: Optional[str],
                     options: Optional[dict[str, Any]]) -> "TCPSettings":
        """serve()'s tcp_options: the field names of this class; unknown names are an error."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)} - {"host", "port", "secret"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown tcp_options {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        return cls(host, port, secret, **options)

    @property
    def limits(self) -> Limits:
        return Limits(self.header_timeout, self.idle_timeout, self.max_connections,
                      self.max_connections_per_address, self.auth_failure_backoff)

    def tls_context(self) -> Optional[ssl.SSLContext]:
        return server_tls_context(self.tls_cert, self.tls_key, self.tls_client_ca) if self.tls_cert else None

    @property
    def scheme(self) -> str:
        return "tcps" if self.tls_cert else "tcp"

    def address(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"
