"""Subscriptions: events a service publishes, as a client receives them (any transport)."""
from __future__ import annotations

import queue
import threading
import time
from collections import namedtuple
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

if TYPE_CHECKING:
    from typing_extensions import Self

from . import serialisers

Event = namedtuple("Event", "topic payload seq topic_seq")
Event.__doc__ = "A published event: seq is per service, topic_seq per topic (gaps = missed events)."


class Subscription:
    """Events published after subscribing, in order. Iterate, or call get(timeout).

    `source` is a transport subscription with poll(timeout) -> iterable of
    (seq, topic, topic_seq, payload_bytes) and close().
    """

    def __init__(self, source: Any, topics: Optional[Sequence[str]] = None):
        self._source = source
        self.topics = None if topics is None else {str(t) for t in topics}
        self._pending: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.closed = False

    @property
    def missed(self) -> int:
        return getattr(self._source, "missed", 0)

    def get(self, timeout: Optional[float] = None) -> Event:
        """The next event; raises queue.Empty after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._pending.get_nowait()
            except queue.Empty:
                pass
            if self.closed:
                raise queue.Empty
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self._lock:
                if self.closed:
                    raise queue.Empty
                for seq, topic, topic_seq, payload in self._source.poll(
                        1.0 if remaining is None else min(remaining, 1.0)):
                    if self.topics is None or topic in self.topics:
                        self._pending.put(Event(topic, serialisers.CONTROL.decode(payload), seq, topic_seq))
            if deadline is not None and time.monotonic() >= deadline and self._pending.empty():
                raise queue.Empty

    def __iter__(self) -> Iterator[Event]:
        while not self.closed:
            try:
                yield self.get(timeout=1.0)
            except queue.Empty:
                continue

    def close(self) -> None:
        """Safe from any thread: a get() blocked in another thread returns (queue.Empty)."""
        if self.closed:
            return
        self.closed = True
        wake = getattr(self._source, "wake", None)
        if wake is not None:
            wake()
        with self._lock:  # waits for a poll in progress to return before freeing its objects
            self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
