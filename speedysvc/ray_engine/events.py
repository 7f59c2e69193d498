"""Pub/sub over Ray: a service's events live on its board actor (board.py).

Semantics, the same as the shared-memory ring where they can be:
- A replica's publish() is an actor call that returns the event's per-topic sequence number
  once the board holds it. Every event gets a service-wide `seq` and a per-topic `topic_seq`
  from the board, in the order the board receives them: the events of one replica arrive in
  the order it published them (Ray runs one caller's calls to an actor in order); events of
  different replicas interleave in arrival order.
- The board keeps the last 1,024 events. A subscriber long-polls for events after the last
  `seq` it saw, from any node of the cluster; one that falls more than 1,024 events behind
  misses the oldest and counts them in `Subscription.missed` (gaps in seq), as a lapped
  shared-memory reader does. Events published before subscribing are not delivered.
- Events are lost if the board is (the service stopped: its board goes with it); a stopped
  and restarted service has a new board, and a subscriber of the old one ends.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Optional

POLL_WAIT_S = 1.0

# An event as the board keeps it: (seq, topic, topic_seq, payload)
BoardEvent = tuple[int, str, int, bytes]


class BoardEventSource:
    """The transport subscription behind client.Subscription: poll(timeout) yields
    (seq, topic, topic_seq, payload_bytes)."""

    def __init__(self, board: Any):
        import ray
        self._ray = ray
        self.board = board
        self.missed = 0
        self._last: int = ray.get(board.head.remote())
        # None ends a poll (the reader stopped, or wake())
        self._events: "queue.SimpleQueue[Optional[BoardEvent]]" = queue.SimpleQueue()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name="speedysvc-ray-events")
        self._reader.start()

    def _read_loop(self) -> None:
        after = self._last
        while not self._closed:
            try:
                batch: list[BoardEvent] = self._ray.get(self.board.poll.remote(after, POLL_WAIT_S))
            except Exception:  # noqa: BLE001 - the board (the service) is gone
                break
            for event in batch:
                after = event[0]
                self._events.put(event)
        self._events.put(None)

    def poll(self, timeout: Optional[float]) -> Iterator[tuple[int, str, int, memoryview]]:
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while item is not None:
            seq, topic, topic_seq, payload = item
            if seq > self._last + 1:
                self.missed += seq - self._last - 1
            self._last = seq
            yield seq, topic, topic_seq, memoryview(payload)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return

    def wake(self) -> None:
        self._events.put(None)

    def close(self) -> None:
        self._closed = True
