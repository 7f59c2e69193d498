"""JSON bodies of the 0.12 wire protocol: events out, command requests in, replies out.

Everything here is pure (no sockets) so the byte format is tested on its own and the
same encoding is used by every transport.
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, datetime
from enum import Enum
from typing import Any, Mapping, Optional, Tuple
from uuid import UUID

from .case_conversion import camelize_keys, snakify_keys
from .commands import ApiCommandRequest, resolve_command
from .errors import EventSerialisationError, MalformedCommandRequest

# Reported in heartbeats; peers built for 0.12 read it to know which protocol they face.
PROTOCOL_VERSION = "0.12.0"


def to_json_compatible(value: Any, path: str = "message") -> Any:
    """Enums become their value, datetimes a POSIX timestamp, dates ISO text, UUIDs
    their text, dataclasses dicts, tuples lists, and NaN/infinite floats null (JSON has
    no such numbers) -- the conversions of 0.12.

    Raises EventSerialisationError naming the offending path, so the error reaches
    the application that built the event rather than the publishing thread.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Enum):
        return to_json_compatible(value.value, path)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json_compatible(getattr(value, f.name), f"{path}.{f.name}")
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if isinstance(key, Enum):
                key = key.value
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise EventSerialisationError(
                    f"{path}: key {key!r} of type {type(key).__name__} cannot be a JSON object key"
                )
            result[key] = to_json_compatible(item, f"{path}.{key}")
        return result
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise EventSerialisationError(
        f"{path}: object of type {type(value).__name__} is not JSON-serialisable; "
        "send only dicts, lists, str, int, float, bool, None, enums, datetimes and dataclasses"
    )


def encode_body(message: Any) -> Tuple[Any, bytes]:
    """(camelCase JSON-compatible payload, UTF-8 JSON bytes) for a message body."""
    try:
        payload = camelize_keys(to_json_compatible(message))
    except RecursionError:
        raise EventSerialisationError("message is nested too deeply or contains itself") from None
    try:
        body = json.dumps(payload).encode("utf8")
    except (TypeError, ValueError) as exc:  # e.g. a circular reference
        raise EventSerialisationError(f"message cannot be encoded as JSON: {exc}") from exc
    return payload, body


def heartbeat_body(identifier: str, timestamp: float) -> dict:
    return {"identifier": identifier, "version": PROTOCOL_VERSION, "timestamp": timestamp}


def _is_int(value: Any) -> bool:
    # bool is an int subclass but `true` is not a command number.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def command_request_from_wire(obj: Any) -> ApiCommandRequest:
    """A request object `{command, customCommand, nonce, data}` -> ApiCommandRequest.

    Only keys of `data` are converted to snake_case; string values arrive untouched.
    """
    if not isinstance(obj, Mapping):
        raise MalformedCommandRequest(f"a command request must be a JSON object, got {type(obj).__name__}")
    nonce = obj.get("nonce", 0)
    if nonce is None:
        nonce = 0
    if not _is_int(nonce):
        raise MalformedCommandRequest(f"'nonce' must be an integer, got {nonce!r}")
    nonce = int(nonce)
    if "command" not in obj:
        raise MalformedCommandRequest("the request has no 'command'", nonce)
    command = obj["command"]
    if not _is_int(command):
        raise MalformedCommandRequest(f"'command' must be an integer, got {command!r}", nonce)
    custom_command = obj.get("customCommand", obj.get("custom_command", -1))
    if custom_command is None:
        custom_command = -1
    if not _is_int(custom_command):
        raise MalformedCommandRequest(f"'customCommand' must be an integer, got {custom_command!r}", nonce)
    return ApiCommandRequest(
        command=resolve_command(int(command)),
        custom_command=int(custom_command),
        nonce=nonce,
        data=snakify_keys(obj.get("data")),
    )


def parse_json_object(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCommandRequest(f"the request is not UTF-8 JSON: {exc}") from exc


def parse_command_request(raw: bytes) -> ApiCommandRequest:
    return command_request_from_wire(parse_json_object(raw))


def encode_json(payload: Optional[Any]) -> bytes:
    """Bytes of an already JSON-compatible payload (replies, snapshots)."""
    return json.dumps(payload).encode("utf8")
