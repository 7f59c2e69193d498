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


# A command number a peer sent that this version does not name stays a plain int,
# so applications can define their own commands without losing the number.
CommandValue = Union[ApiCommand, int]


def resolve_command(value: int) -> CommandValue:
    try:
        return ApiCommand(value)
    except ValueError:
        return value


@dataclass
class ApiCommandRequest:
    command: CommandValue
    custom_command: int = -1
    nonce: int = -1
    data: Optional[Any] = None


@dataclass
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
