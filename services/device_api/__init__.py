"""Device event/command API (auto-trainer-api 0.12 interface) on speedysvc.

A device application creates an RpcService, registers a command handler and
publishes events; remote peers reach it through the ZeroMQ gateway (0.12 wire
protocol) and speedysvc clients through the in-process speedysvc service.
"""
from . import event_payloads
from .alarms import ApiAlarmKind, ApiDetectorKind, ApiEmergencyResumeReason, ApiEmergencyStopReason
from .application_modes import ApiApplicationMode, ApiTrainingMode
from .commands import (
    ApiCommand,
    ApiCommandReqeustResult,
    ApiCommandRequest,
    ApiCommandRequestErrorKind,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    CommandRequestDelegate,
)
from .enum_resolution import resolve_enum
from .errors import (
    CurveConfigurationError,
    DeviceApiError,
    EventSerialisationError,
    InvalidApiOptions,
    MalformedCommandRequest,
    ServiceStateError,
    TransportBindError,
)
from .event_payloads import *  # noqa: F401,F403  (the *Context payload types, as autotrainer.api.event has them)
from .events import ApiEvent, ApiEventDict, ApiEventKind, ApiPelletShiftSource, build_event
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
from .system_status import (
    ApiAlarmStatus,
    ApiAnimalStatus,
    ApiBehaviorStatus,
    ApiDetectorStatus,
    ApiPelletDeviceStatus,
    ApiProjectStatus,
    ApiReachStatus,
    ApiSystemConfiguration,
    ApiSystemStatus,
    ApiTunnelDeviceStatus,
)
from .topics import ApiTopic

__all__ = [
    "ApiCommand", "ApiCommandRequest", "ApiCommandRequestErrorKind", "ApiCommandRequestResponse",
    "ApiCommandRequestResult", "ApiCommandReqeustResult", "CommandRequestDelegate",
    "ApiEvent", "ApiEventDict", "ApiEventKind", "ApiPelletShiftSource", "ApiTopic", "build_event", "resolve_enum",
    "ApiApplicationMode", "ApiTrainingMode", "ApiAlarmKind", "ApiDetectorKind", "ApiEmergencyStopReason",
    "ApiEmergencyResumeReason", "ApiSystemStatus", "ApiPelletDeviceStatus", "ApiTunnelDeviceStatus",
    "ApiDetectorStatus", "ApiAlarmStatus", "ApiProjectStatus", "ApiAnimalStatus", "ApiReachStatus",
    "ApiBehaviorStatus", "ApiSystemConfiguration",
    "ApiOptions", "RpcOptions", "TelemetryOptions", "ZmqGatewayOptions", "SpeedysvcOptions", "CurveOptions",
    "create_default_api_options", "create_api_service", "RpcService",
    "DeviceApiError", "EventSerialisationError", "MalformedCommandRequest", "TransportBindError",
    "ServiceStateError", "CurveConfigurationError", "InvalidApiOptions",
    *event_payloads.__all__,
]
