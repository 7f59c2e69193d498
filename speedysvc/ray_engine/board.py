"""The per-service board: one small Ray actor beside a service's Serve application.

It holds what must be shared by every replica of the service, wherever they run:
- replica readings (pid, node, RSS/USS, CPU, calls, errors, per-method latency histograms,
  busy/idle), each replica reporting its own, as shm workers keep their own counters;
- request ids already started (the at-most-once guard, see replica.py);
- the service's events (pub/sub), see events.py for their ordering and loss semantics;
- recent log lines of the replicas, which the supervisor copies into the service's log.

It is an async actor (num_cpus=0, detached, named `names.board_name`), so long-polling
subscribers never hold up claims or reports. The supervisor's pool creates it before deploying
and kills it after the application is deleted.
"""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Optional

import ray

from .events import BoardEvent

EVENT_SLOTS = 1024            # as the shared-memory event ring
CLAIM_MEMORY_S = 600.0        # how long a started request id is remembered
LOG_LINES_KEPT = 5000

# A log line as a replica reports it: (ts, stream, level, message)
ReplicaLogLine = tuple[float, str, Optional[str], str]
# A log line as the board keeps it: (log_seq, ts, stream, level, message, replica)
BoardLogLine = tuple[int, float, str, Optional[str], str, str]


@ray.remote(num_cpus=0, max_restarts=0)
class Board:
    def __init__(self) -> None:
        self.readings: dict[str, dict[str, Any]] = {}
        self.claims: "collections.OrderedDict[bytes, float]" = collections.OrderedDict()
        self.events: "collections.deque[BoardEvent]" = collections.deque(maxlen=EVENT_SLOTS)
        self.seq = 0
        self.topic_seqs: dict[str, int] = {}
        self.log_lines: "collections.deque[BoardLogLine]" = collections.deque(maxlen=LOG_LINES_KEPT)
        self.log_seq = 0
        self._new_event: Optional[asyncio.Event] = None

    # -- at most once ----------------------------------------------------------------------
    async def claim(self, request_id: bytes) -> bool:
        """True the first time `request_id` is claimed: the caller may run the call."""
        now = time.monotonic()
        while self.claims:
            first, at = next(iter(self.claims.items()))
            if now - at < CLAIM_MEMORY_S:
                break
            self.claims.popitem(last=False)
        if request_id in self.claims:
            return False
        self.claims[request_id] = now
        return True

    # -- replica readings ------------------------------------------------------------------
    async def report(self, replica: str, reading: dict[str, Any],
                     lines: list[ReplicaLogLine]) -> None:
        reading["reported_at"] = time.time()
        self.readings[replica] = reading
        for line in lines:
            self.log_seq += 1
            self.log_lines.append((self.log_seq, *line, replica))

    async def forget(self, replica: str) -> None:
        self.readings.pop(replica, None)

    async def snapshot(self, after_log: int = 0) -> dict[str, Any]:
        return {"readings": dict(self.readings),
                "logs": [entry for entry in self.log_lines if entry[0] > after_log]}

    # -- events ----------------------------------------------------------------------------
    async def publish(self, topic: str, payload: bytes) -> int:
        self.seq += 1
        topic_seq = self.topic_seqs.get(topic, 0) + 1
        self.topic_seqs[topic] = topic_seq
        self.events.append((self.seq, topic, topic_seq, payload))
        if self._new_event is not None:
            self._new_event.set()
            self._new_event = None
        return topic_seq

    async def head(self) -> int:
        """The sequence number of the latest event (a new subscriber starts after it)."""
        return self.seq

    async def poll(self, after: int, timeout: float) -> list[BoardEvent]:
        """Events with seq > `after`, waiting up to `timeout` for the first one."""
        if self.seq <= after:
            if self._new_event is None:
                self._new_event = asyncio.Event()
            try:
                await asyncio.wait_for(self._new_event.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        return [e for e in self.events if e[0] > after]


def get_or_create(name: str, namespace: str) -> Any:
    """The board called `name`, created if needed (detached: it lives until the pool kills it,
    so replicas of a supervisor that died keep working on a shared cluster)."""
    # mypy keeps a decorated class's own type; ray.remote made Board an ActorClass
    actor_class: Any = Board
    return actor_class.options(name=name, namespace=namespace, lifetime="detached",
                               get_if_exists=True).remote()


def lookup(name: str, namespace: str) -> Any:
    return ray.get_actor(name, namespace=namespace)
