"""The reply a peer receives for a command request: `{nonce, command, result, data,
errorKind, errorCode, errorMessage}` in that key order, as 0.12 sends it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .commands import (
    ApiCommandRequest,
    ApiCommandRequestErrorKind,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
)
from .errors import EventSerialisationError, MalformedCommandRequest
from .wire_format import encode_body


@dataclass(frozen=True)
class CommandReply:
    nonce: int
    command: int
    result: int
    data: Any = None  # already JSON-compatible with camelCase keys
    error_kind: int = ApiCommandRequestErrorKind.NONE
    error_code: int = 0
    error_message: Optional[str] = None

    def to_wire(self) -> dict:
        return {
            "nonce": self.nonce,
            "command": int(self.command),
            "result": int(self.result),
            "data": self.data,
            "errorKind": int(self.error_kind),
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
        }


def reply_from_response(request: ApiCommandRequest, response: Any) -> CommandReply:
    """Build the reply from what a handler returned; a wrong return value is the handler's
    error and is reported to the peer rather than raised into the service."""
    if not isinstance(response, ApiCommandRequestResponse):
        return system_error_reply(
            request,
            ApiCommandRequestResult.EXCEPTION,
            f"command handler returned {type(response).__name__}, expected ApiCommandRequestResponse",
        )
    try:
        data, _ = encode_body(response.data)
    except EventSerialisationError as exc:
        return system_error_reply(request, ApiCommandRequestResult.EXCEPTION, f"command result data: {exc}")
    error_code = int(response.error_code or 0)
    return CommandReply(
        nonce=request.nonce,
        command=int(request.command),
        result=int(response.result),
        data=data,
        # 0.12 peers read a non-zero error code as a command error.
        error_kind=ApiCommandRequestErrorKind.COMMAND_ERROR if error_code else ApiCommandRequestErrorKind.NONE,
        error_code=error_code,
        error_message=response.error_message,
    )


def system_error_reply(request: ApiCommandRequest, result: ApiCommandRequestResult, message: str) -> CommandReply:
    return CommandReply(
        nonce=request.nonce,
        command=int(request.command),
        result=int(result),
        error_kind=ApiCommandRequestErrorKind.SYSTEM_ERROR,
        error_message=message,
    )


def malformed_request_reply(error: MalformedCommandRequest) -> CommandReply:
    return CommandReply(
        nonce=error.nonce,
        command=0,
        result=ApiCommandRequestResult.UNRECOGNIZED,
        error_kind=ApiCommandRequestErrorKind.COMMAND_ERROR,
        error_message=str(error),
    )
