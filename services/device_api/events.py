"""Events published on ApiTopic.EVENT (and EMERGENCY): ApiEvent, ApiEventDict and
build_event(), shaped as in 0.12.

ApiEventKind (event_kinds) holds every 0.12 kind. An application may still send its
own kinds as any IntEnum or plain int: an event's `kind` only has to be an int on
the wire.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Mapping, Optional, TypedDict, Union

from .event_kinds import ApiEventKind, ApiPelletShiftSource

__all__ = ["ApiEvent", "ApiEventDict", "ApiEventKind", "ApiPelletShiftSource", "build_event",
           "EMERGENCY_EVENT_KINDS", "is_emergency_kind"]

EMERGENCY_EVENT_KINDS = frozenset({ApiEventKind.emergencyStop, ApiEventKind.emergencyResume})


def is_emergency_kind(kind: Any) -> bool:
    """Emergency stop/resume go out on both EMERGENCY and EVENT, as 0.12 peers expect."""
    try:
        return int(kind) in EMERGENCY_EVENT_KINDS
    except (TypeError, ValueError):
        return False


EventKindValue = Union[ApiEventKind, IntEnum, int]


class ApiEventDict(TypedDict):
    kind: EventKindValue
    when: datetime
    index: int  # a monotonic clock in nanoseconds, e.g. time.perf_counter_ns()
    context: Optional[Mapping[str, Any]]


@dataclass(frozen=True)
class ApiEvent:
    kind: EventKindValue
    when: datetime
    index: int
    context: Optional[Mapping[str, Any]] = None
    # How many more times this event happened since it was last sent; when/index are the last one's.
    repeat: int = 0

    def is_same(self, other: Optional["ApiEvent"]) -> bool:
        """Same kind and context: a caller may count it as a repeat instead of re-sending."""
        return other is not None and self.kind == other.kind and self.context == other.context


def build_event(kind: EventKindValue, context: Optional[Any] = None) -> ApiEventDict:
    """An ApiEventDict of `kind` stamped now (`when` = datetime.now(), `index` =
    time.perf_counter_ns()), ready for RpcService.send_event_dict().

    A dataclass context (ApiSystemStatus, ApiAlarmStatus, ...) is stored as its dict,
    so the event is a plain mapping; any other context is stored as given.
    """
    if is_dataclass(context) and not isinstance(context, type):
        context = asdict(context)
    return {"kind": kind, "when": datetime.now(), "index": time.perf_counter_ns(), "context": context}
