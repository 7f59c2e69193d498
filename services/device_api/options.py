"""Options of the device API. ApiOptions/RpcOptions/TelemetryOptions keep the 0.12
field names and defaults, so applications written for 0.12 construct them unchanged;
the additional fields have defaults that reproduce 0.12 behaviour where it was sound."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from .errors import InvalidApiOptions


@dataclass(frozen=True)
class CurveOptions:
    """CURVE encryption and client authentication for the ZeroMQ gateway.

    Keys are Z85 text (40 characters) as produced by zmq.curve_keypair(); only
    clients whose public key is in `allowed_client_keys` can connect.
    """

    server_public_key: str
    server_secret_key: str
    allowed_client_keys: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("server_public_key", "server_secret_key"):
            value = getattr(self, name)
            if isinstance(value, bytes):
                object.__setattr__(self, name, value.decode("ascii"))
        keys = tuple(k.decode("ascii") if isinstance(k, bytes) else k for k in self.allowed_client_keys)
        object.__setattr__(self, "allowed_client_keys", keys)


@dataclass(frozen=True)
class ZmqGatewayOptions:
    """The ZeroMQ gateway that 0.12 remote peers talk to (PUB for events, REP for commands)."""

    enable: bool = True
    # 0.12 bound every interface; loopback unless the deployment asks for more.
    bind_host: str = "127.0.0.1"
    # Full endpoints override bind_host and the RpcOptions ports ("tcp://0.0.0.0:5556", "ipc://...").
    publisher_endpoint: Optional[str] = None
    command_endpoint: Optional[str] = None
    # A third frame with the 8-byte little-endian per-topic sequence number. Off by
    # default: 0.12 peers unpack exactly two frames.
    sequence_frame: bool = False
    curve: Optional[CurveOptions] = None
    send_high_water_mark: int = 10000


@dataclass(frozen=True)
class SpeedysvcOptions:
    """The in-process speedysvc service through which speedysvc clients reach the device."""

    enable: bool = False
    service_name: str = "device_api"
    scope: Optional[str] = None
    # "host:port" for the TCP transport (port 0 picks a free one); None = shared memory only.
    tcp: Optional[str] = None
    workers: int = 4


@dataclass(frozen=True)
class RpcOptions:
    enable: bool = True
    identifier: str = "autotrainer-device"
    heartbeat_interval: float = 5
    subscriber_port: int = 5556
    command_port: int = 5557
    zmq: ZmqGatewayOptions = field(default_factory=ZmqGatewayOptions)
    speedysvc: SpeedysvcOptions = field(default_factory=SpeedysvcOptions)
    # Handlers run on this many threads, off the I/O path, so commands can overlap.
    command_workers: int = 4
    # Seconds an asynchronous command's result stays retrievable by nonce.
    command_result_retention: float = 300.0
    # Seconds a PENDING_WITH_NOTIFICATION command is remembered while no result arrives.
    pending_command_timeout: float = 3600.0
    # Upper bound of stop() spent delivering events that were already queued.
    stop_flush_timeout: float = 2.0
    # Events beyond this many undelivered ones are refused (send_* returns False).
    max_queued_messages: int = 10000

    def __post_init__(self) -> None:
        _require_positive("heartbeat_interval", self.heartbeat_interval)
        _require_positive("command_workers", self.command_workers)
        _require_positive("max_queued_messages", self.max_queued_messages)
        for name in ("command_result_retention", "pending_command_timeout", "stop_flush_timeout"):
            if getattr(self, name) < 0:
                raise InvalidApiOptions(f"RpcOptions.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("subscriber_port", "command_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise InvalidApiOptions(
                    f"RpcOptions.{name} must be a port number 0..65535 (0 = any free port), got {port!r}")


@dataclass(frozen=True)
class TelemetryOptions:
    """Accepted for 0.12 compatibility; telemetry export is not implemented here."""

    enable: bool = False
    endpoint: Optional[str] = None
    api_key: str = ""


@dataclass(frozen=True)
class ApiOptions:
    rpc: Optional[RpcOptions] = None
    telemetry: Optional[TelemetryOptions] = None


def create_default_api_options() -> ApiOptions:
    return ApiOptions(rpc=RpcOptions(), telemetry=TelemetryOptions())


def _require_positive(name: str, value: float) -> None:
    if not value > 0:
        raise InvalidApiOptions(f"RpcOptions.{name} must be > 0, got {value!r}")
