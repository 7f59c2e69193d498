"""Publish/subscribe over shared memory: one ring of event slots per service.

Publishers (any worker) append under a lock and post the semaphore of every registered
subscriber. Subscribers read without a lock: each slot carries its sequence number, written
last and checked again after the copy (a seqlock), so a reader that was lapped by the writer
notices and reports the gap instead of returning torn data.

Every event has a global sequence number and a per-topic one (`topic_seq`); a subscriber
filtering by topic sees consecutive topic_seq values unless it missed events.
"""
from __future__ import annotations

import itertools
import os
import struct
import time
import zlib
from typing import Iterator, Optional

import posix_ipc

from .. import naming
from ..errors import PayloadTooLarge
from .segment import Segment, open_semaphore, unlink_semaphore

SLOTS = 1024
SLOT_BYTES = 16 * 1024
HEADER_BYTES = 4096
TOPIC_TABLE = 512           # (hash, count) pairs for per-topic sequence numbers
MAX_SUBSCRIBERS = 128       # (pid, n) pairs
TOPICS_OFFSET_W = 8
SUBS_OFFSET_W = TOPICS_OFFSET_W + TOPIC_TABLE * 2
TABLES_BYTES = (SUBS_OFFSET_W + MAX_SUBSCRIBERS * 2) * 8
SLOTS_OFFSET = (TABLES_BYTES + HEADER_BYTES - 1) // HEADER_BYTES * HEADER_BYTES
TOTAL_BYTES = SLOTS_OFFSET + SLOTS * SLOT_BYTES

E_MAGIC, E_HEAD, E_LOCK_OWNER = range(3)
MAGIC = 0x5353_5643_4556_0001
SLOT_HEADER = struct.Struct("<QQIH")  # seq, topic seq, payload length, topic length
MAX_EVENT_BYTES = SLOT_BYTES - SLOT_HEADER.size - 256

_subscriber_numbers = itertools.count(1)


class EventRing:
    def __init__(self, scope: str, service: str, *, create: bool = False):
        self.scope = scope
        self.service = service
        name = naming.event_segment(scope, service)
        lock_name = naming.service_semaphore(scope, service, "evl")
        if create:
            for n in (name,):
                try:
                    posix_ipc.unlink_shared_memory(n)
                except posix_ipc.ExistentialError:
                    pass
            unlink_semaphore(lock_name)
            self.seg = Segment(name, TOTAL_BYTES)
            self.lock = open_semaphore(lock_name, 1)
            self.seg.q[E_MAGIC] = MAGIC
        else:
            self.seg = Segment(name)
            self.lock = open_semaphore(lock_name)
        self.q = self.seg.q
        self.pid = os.getpid()
        self._sub_sems: dict[tuple[int, int], posix_ipc.Semaphore] = {}

    def close(self) -> None:
        for sem in self._sub_sems.values():
            sem.close()
        self._sub_sems.clear()
        self.lock.close()
        self.seg.close()

    def destroy(self) -> None:
        subs = [(self.q[SUBS_OFFSET_W + 2 * i], self.q[SUBS_OFFSET_W + 2 * i + 1])
                for i in range(MAX_SUBSCRIBERS)]
        self.close()
        self.seg.unlink()
        unlink_semaphore(naming.service_semaphore(self.scope, self.service, "evl"))
        for pid, n in subs:
            if pid:
                unlink_semaphore(naming.subscriber_semaphore(self.scope, self.service, pid, n))

    def _acquire(self) -> None:
        while True:
            try:
                self.lock.acquire(1.0)
                break
            except posix_ipc.BusyError:
                owner = self.q[E_LOCK_OWNER]
                if owner and not naming.pid_alive(owner):
                    break
        self.q[E_LOCK_OWNER] = self.pid

    def _release(self) -> None:
        self.q[E_LOCK_OWNER] = 0
        self.lock.release()

    # -- publishing -------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> int:
        topic_b = topic.encode("utf-8")
        if len(payload) + len(topic_b) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(f"event on topic {topic!r} is {len(payload)} bytes; the limit is "
                                  f"{MAX_EVENT_BYTES} (publish a reference and fetch the data with a call)")
        q = self.q
        self._acquire()
        try:
            topic_seq = self._next_topic_seq(topic_b)
            seq = q[E_HEAD] + 1
            off = SLOTS_OFFSET + (seq % SLOTS) * SLOT_BYTES
            buf = self.seg.buf
            slot_w = off // 8
            q[slot_w] = 0  # invalidate while writing
            body = off + SLOT_HEADER.size
            buf[body:body + len(topic_b)] = topic_b
            buf[body + len(topic_b):body + len(topic_b) + len(payload)] = payload
            SLOT_HEADER.pack_into(buf, off, 0, topic_seq, len(payload), len(topic_b))
            q[slot_w] = seq
            q[E_HEAD] = seq
            subscribers = [(q[SUBS_OFFSET_W + 2 * i], q[SUBS_OFFSET_W + 2 * i + 1])
                           for i in range(MAX_SUBSCRIBERS) if q[SUBS_OFFSET_W + 2 * i]]
        finally:
            self._release()
        for pid, n in subscribers:
            self._wake(pid, n)
        return topic_seq

    def _next_topic_seq(self, topic_b: bytes) -> int:
        q = self.q
        h = zlib.crc32(topic_b) | (len(topic_b) << 32) | (1 << 63)
        start = h % TOPIC_TABLE
        for i in range(TOPIC_TABLE):
            w = TOPICS_OFFSET_W + 2 * ((start + i) % TOPIC_TABLE)
            if q[w] == h or q[w] == 0:
                q[w] = h
                q[w + 1] += 1
                return q[w + 1]
        return 0  # table full: per-topic numbering unavailable for new topics

    def _wake(self, pid: int, n: int) -> None:
        sem = self._sub_sems.get((pid, n))
        if sem is None:
            try:
                sem = open_semaphore(naming.subscriber_semaphore(self.scope, self.service, pid, n))
            except posix_ipc.ExistentialError:
                return
            self._sub_sems[(pid, n)] = sem
        if sem.value < 1000:  # a subscriber that stopped reading must not overflow the semaphore
            sem.release()

    # -- subscribing ------------------------------------------------------------------
    def register(self, pid: int, n: int) -> None:
        q = self.q
        self._acquire()
        try:
            for i in range(MAX_SUBSCRIBERS):
                w = SUBS_OFFSET_W + 2 * i
                if q[w] == 0 or not naming.pid_alive(q[w]):
                    q[w], q[w + 1] = pid, n
                    return
        finally:
            self._release()
        raise RuntimeError(f"{self.service!r} already has {MAX_SUBSCRIBERS} subscribers")

    def unregister(self, pid: int, n: int) -> None:
        q = self.q
        self._acquire()
        try:
            for i in range(MAX_SUBSCRIBERS):
                w = SUBS_OFFSET_W + 2 * i
                if q[w] == pid and q[w + 1] == n:
                    q[w] = q[w + 1] = 0
        finally:
            self._release()

    def head(self) -> int:
        return self.q[E_HEAD]

    def read(self, seq: int) -> Optional[tuple[str, int, bytes]]:
        """Event `seq` as (topic, topic_seq, payload); None if it was overwritten."""
        off = SLOTS_OFFSET + (seq % SLOTS) * SLOT_BYTES
        q = self.q
        if q[off // 8] != seq:
            return None
        _, topic_seq, plen, tlen = SLOT_HEADER.unpack_from(self.seg.buf, off)
        body = off + SLOT_HEADER.size
        raw = bytes(self.seg.buf[body:body + tlen + plen])
        if q[off // 8] != seq:
            return None
        return raw[:tlen].decode("utf-8", "replace"), topic_seq, raw[tlen:]


class ShmSubscription:
    """Reads events of one service published after it was created.

    If the service is stopped and started again (its event ring made anew), the subscription
    attaches to the new ring by itself; `reattached` counts how often that happened (events
    published while the service was down are not seen).
    """

    REATTACH_CHECK_S = 0.5

    def __init__(self, scope: str, service: str):
        self.scope = scope
        self.service = service
        self.pid = os.getpid()
        self.n = next(_subscriber_numbers)
        self.sem_name = naming.subscriber_semaphore(scope, service, self.pid, self.n)
        unlink_semaphore(self.sem_name)
        self.sem = open_semaphore(self.sem_name, 0)
        # None only while re-attaching, so a failed re-attach never closes the old ring twice
        self.ring: Optional[EventRing] = None
        self._attach(EventRing(scope, service))
        self.missed = 0
        self.reattached = 0
        self.closed = False

    def _attach(self, ring: "EventRing") -> None:
        self.ring = ring
        self.next_seq = ring.head() + 1
        ring.register(self.pid, self.n)
        self._next_check = time.monotonic() + self.REATTACH_CHECK_S

    def _follow_restart(self) -> None:
        """Cheap check (a stat) at most every REATTACH_CHECK_S while no events arrive."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.REATTACH_CHECK_S
        old = self.ring
        assert old is not None, "a re-attach failed half-way"
        if not old.seg.replaced():
            return
        try:
            ring = EventRing(self.scope, self.service)
        except posix_ipc.ExistentialError:
            return  # still stopped; look again later
        self.ring = None
        old.close()
        # the old service unlinked our wake-up semaphore when it stopped: make it again
        old_sem, self.sem = self.sem, None
        unlink_semaphore(self.sem_name)
        self.sem = open_semaphore(self.sem_name, 0)
        old_sem.close()
        self._attach(ring)
        self.reattached += 1

    def poll(self, timeout: Optional[float]) -> Iterator[tuple[int, str, int, bytes]]:
        """Yield available events as (seq, topic, topic_seq, payload), waiting up to `timeout`."""
        ring = self.ring
        assert ring is not None, "a re-attach failed half-way"
        if ring.head() < self.next_seq:
            try:
                self.sem.acquire(timeout if timeout is None or timeout <= self.REATTACH_CHECK_S
                                 else self.REATTACH_CHECK_S)
            except (posix_ipc.BusyError, posix_ipc.SignalError):
                self._follow_restart()
                return
        # drain surplus wake-ups: we read everything that is there now anyway
        while self.sem.value > 0:
            try:
                self.sem.acquire(0)
            except posix_ipc.BusyError:
                break
        head = ring.head()
        if head - self.next_seq >= SLOTS:
            skipped = head - SLOTS + 1 - self.next_seq
            self.missed += skipped
            self.next_seq += skipped
        while self.next_seq <= head:
            seq = self.next_seq
            self.next_seq += 1
            event = ring.read(seq)
            if event is None:
                self.missed += 1
                continue
            yield (seq, *event)

    def wake(self) -> None:
        """Wake a thread blocked in poll() (used before closing from another thread)."""
        if not self.closed:
            self.sem.release()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.ring is not None:
            try:
                self.ring.unregister(self.pid, self.n)
            except Exception:
                pass
            self.ring.close()
        try:
            self.sem.unlink()
        except posix_ipc.ExistentialError:
            pass
        self.sem.close()

