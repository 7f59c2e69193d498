"""Device event/command API (auto-trainer-api 0.12 interface) on speedysvc.

A device application creates an RpcService, registers a command handler and
publishes events; remote peers reach it through the ZeroMQ gateway (0.12 wire
protocol) and speedysvc clients through the in-process speedysvc service.
"""
from .commands import (
    ApiCommand,
    ApiCommandRequest,
    ApiCommandRequestErrorKind,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    CommandRequestDelegate,
)
from .errors import (
    CurveConfigurationError,
    DeviceApiError,
    EventSerialisationError,
    InvalidApiOptions,
    MalformedCommandRequest,
    ServiceStateError,
    TransportBindError,
)
from .events import ApiEvent, ApiEventDict, ApiEventKind
from .options import (
    ApiOptions,
    CurveOptions,
    RpcOptions,
    SpeedysvcOptions,
    TelemetryOptions,
    ZmqGatewayOptions,
    create_default_api_options,
)
from .rpc_service import RpcService
from .service_factory import create_api_service
from .topics import ApiTopic

__all__ = [
    "ApiCommand", "ApiCommandRequest", "ApiCommandRequestErrorKind", "ApiCommandRequestResponse",
    "ApiCommandRequestResult", "CommandRequestDelegate",
    "ApiEvent", "ApiEventDict", "ApiEventKind", "ApiTopic",
    "ApiOptions", "RpcOptions", "TelemetryOptions", "ZmqGatewayOptions", "SpeedysvcOptions", "CurveOptions",
    "create_default_api_options", "create_api_service", "RpcService",
    "DeviceApiError", "EventSerialisationError", "MalformedCommandRequest", "TransportBindError",
    "ServiceStateError", "CurveConfigurationError", "InvalidApiOptions",
]
