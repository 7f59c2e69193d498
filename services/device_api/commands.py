"""Command requests from remote peers and the responses a command handler returns.

Numeric values are those of auto-trainer-api 0.12, which remote peers send and expect.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable, Optional, Union


class ApiCommand(IntEnum):
    NONE = 0
    START_ACQUISITION = 50
    STOP_ACQUISITION = 55
    SET_APPLICATION_MODE = 120
    SET_TRAINING_MODE = 130
    EMERGENCY_STOP = 200
    EMERGENCY_RESUME = 210
    GET_CONFIGURATION = 300
    GET_STATUS = 400
    GET_ANIMALS = 500
    SET_LIVE_ANALYSIS_ENABLED = 1000
    SET_PELLET_DELIVERY_ENABLED = 1010
    SET_PELLET_COVER_ENABLED = 1020
    SET_INTERTRIAL_PELLET_SHIFT_ENABLED = 1030
    SET_HOME_ON_EXCESSIVE_DRIFT_ENABLED = 1040
    SET_TRIANGLE_PELLET_DISTANCE_DETECTION_ENABLED = 1050
    SET_AUTO_CLOSE_GATE_ON_INTERTRIAL_ENABLED = 1060
    SET_AUTO_CLAMP_ENABLED = 1070
    SET_TUNNEL_SWEEP_ENABLED = 1080
    SET_BATCH_TRIALS_ENABLED = 1090
    USER_DEFINED = 99999

    @classmethod
    def is_member(cls, value: Any) -> bool:
        """True when `value` is the number of a member (0.12's helper)."""
        return value in cls._value2member_map_


class ApiCommandRequestResult(IntEnum):
    UNRECOGNIZED = 0
    SUCCESS = 100
    PENDING = 200
    PENDING_WITH_NOTIFICATION = 201
    FAILED = 400
    EXCEPTION = 500
    UNAVAILABLE = 9999


class ApiCommandRequestErrorKind(IntEnum):
    NONE = 0
    SYSTEM_ERROR = 1
    COMMAND_ERROR = 2


# The seed document spells it this way; applications written from it keep working.
ApiCommandReqeustResult = ApiCommandRequestResult


# A command number a peer sent that this version does not name stays a plain int,
# so applications can define their own commands without losing the number.
CommandValue = Union[ApiCommand, int]


def resolve_command(value: int) -> CommandValue:
    try:
        return ApiCommand(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class ApiCommandRequest:
    command: CommandValue
    custom_command: int = -1
    nonce: int = -1
    data: Optional[Any] = None

    @classmethod
    def parse_bytes(cls, message: bytes) -> Optional["ApiCommandRequest"]:
        """A request from its UTF-8 JSON; None when it has no command (as 0.12).

        Raises MalformedCommandRequest when it is not JSON or a field has the wrong type.
        """
        from .wire_format import parse_json_object

        return cls.parse_object(parse_json_object(message))

    @classmethod
    def parse_object(cls, obj: Any) -> Optional["ApiCommandRequest"]:
        """A request from its decoded JSON object; None when it has no command."""
        from .wire_format import command_request_from_wire

        if not isinstance(obj, dict) or "command" not in obj:
            return None
        return command_request_from_wire(obj)


@dataclass(frozen=True)
class ApiCommandRequestResponse:
    """What a command handler returns, and what send_command_result() publishes.

    `command` and `nonce` are ignored in a handler's return value (the request's are
    used) but are required when publishing the result of an asynchronous command.
    """

    result: ApiCommandRequestResult
    data: Optional[Any] = None
    error_code: int = 0
    error_message: Optional[str] = None
    command: CommandValue = ApiCommand.NONE
    nonce: int = -1


CommandRequestDelegate = Callable[[ApiCommandRequest], ApiCommandRequestResponse]
