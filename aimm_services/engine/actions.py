"""Actions: one per engine operation, with status, progress, times, error and result."""
from __future__ import annotations

import collections
import enum
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import UnknownAction


class ActionStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({ActionStatus.DONE, ActionStatus.FAILED, ActionStatus.CANCELLED})


@dataclass
class Action:
    action_id: int
    operation: str
    instance_id: Optional[int]
    model_type: Optional[str]
    timeout: Optional[float]
    created_at: float
    status: ActionStatus = ActionStatus.QUEUED
    phase: str = "queued"
    progress: Any = None
    data_access_progress: dict = field(default_factory=dict)
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    error: Optional[dict] = None
    revision: int = 0
    # engine-internal, never in snapshots
    result: Any = None
    cancel_reason: Optional[str] = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    calls_in_flight: set = field(default_factory=set)
    finished: threading.Event = field(default_factory=threading.Event)
    timer: Any = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def snapshot(self) -> dict:
        """The msgpack-safe public view (what clients see in `state` and in events)."""
        return {"action_id": self.action_id, "operation": self.operation,
                "instance_id": self.instance_id, "model_type": self.model_type,
                "status": self.status.value, "phase": self.phase, "progress": self.progress,
                "data_access_progress": dict(self.data_access_progress),
                "created_at": self.created_at, "started_at": self.started_at,
                "ended_at": self.ended_at, "timeout": self.timeout, "error": self.error,
                "cancel_requested": self.cancel_requested.is_set(), "revision": self.revision}


class ActionTable:
    """All actions of one engine. Finished actions beyond `history` are forgotten, oldest
    first, so a long-running engine does not keep every result forever."""

    def __init__(self, history: int, clock: Callable[[], float] = time.time):
        self._history = history
        self._clock = clock
        self._ids = itertools.count(1)
        self._actions: dict[int, Action] = {}
        self._finished: collections.deque[int] = collections.deque()

    def create(self, operation: str, instance_id: Optional[int], model_type: Optional[str],
               timeout: Optional[float], revision: int) -> Action:
        action = Action(next(self._ids), operation, instance_id, model_type, timeout,
                        self._clock(), revision=revision)
        self._actions[action.action_id] = action
        return action

    def get(self, action_id: int) -> Action:
        try:
            return self._actions[int(action_id)]
        except (KeyError, TypeError, ValueError):
            raise UnknownAction(f"no action with id {action_id!r} (unknown, or finished "
                                f"long enough ago to be forgotten)") from None

    def all(self) -> list[Action]:
        return list(self._actions.values())

    def finished(self, action: Action) -> None:
        self._finished.append(action.action_id)
        while len(self._finished) > self._history:
            self._actions.pop(self._finished.popleft(), None)
