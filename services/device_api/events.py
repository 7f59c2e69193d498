"""Events published on ApiTopic.EVENT (and EMERGENCY).

ApiEventKind holds the system kinds with their 0.12 values. Applications add their
own kinds as any IntEnum (or plain int): an event's `kind` is only required to be
an int on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Mapping, Optional, TypedDict, Union


class ApiEventKind(IntEnum):
    emergencyStop = 101
    emergencyResume = 102
    applicationLaunched = 201
    applicationTerminating = 202
    applicationModeChanged = 301
    propertyChanged = 501
    systemStatus = 601
    trainingModeChanged = 5001
    detectorChanged = 6001
    alarmChanged = 6501
    unknown = 999999


EMERGENCY_EVENT_KINDS = frozenset({ApiEventKind.emergencyStop, ApiEventKind.emergencyResume})


def is_emergency_kind(kind: Any) -> bool:
    """Emergency stop/resume go out on both EMERGENCY and EVENT, as 0.12 peers expect."""
    try:
        return int(kind) in EMERGENCY_EVENT_KINDS
    except (TypeError, ValueError):
        return False


EventKindValue = Union[ApiEventKind, IntEnum, int]


class ApiEventDict(TypedDict, total=False):
    kind: EventKindValue
    when: datetime
    index: int
    context: Optional[Mapping[str, Any]]


@dataclass
class ApiEvent:
    kind: EventKindValue
    when: datetime
    index: int
    context: Optional[Mapping[str, Any]] = None
    repeat: int = 0

    def is_same(self, other: "ApiEvent") -> bool:
        """Same kind and context: a caller may count it as a repeat instead of re-sending."""
        return int(self.kind) == int(other.kind) and self.context == other.context
