"""The per-service segment: call queue, worker table, method table and worker statistics.

Layout (all integers u64, little-endian, addressed through `Segment.q`):

    [0, 4096)          header (H_* indices below)
    [4096, +64 KiB)    method table: msgpack of ServerMethodsBase.describe()
    ring               RING_CAPACITY entries: (client pid, channel no), (generation, seq)
    worker table       MAX_WORKERS slots of WORKER_WORDS words (W_* indices)
    stats area         MAX_WORKERS x STATS_BYTES: msgpack of per-method statistics

The queue is a ring guarded by a semaphore used as a mutex; a second, counting semaphore
holds the number of queued calls so idle workers can block on it. Any idle worker takes the
next call.
"""
from __future__ import annotations

import os
import time
from typing import Iterator, Optional

import msgpack
import posix_ipc

from .. import naming
from ..errors import ServiceUnavailable
from .segment import Segment, open_semaphore, unlink_semaphore

MAGIC = 0x5353_5643_5356_0003  # "SSVCSV" + layout 3
HEADER_BYTES = 4096
METHODS_BYTES = 64 * 1024
RING_CAPACITY = 2048  # a power of two: slots are tail & RING_MASK
RING_MASK = RING_CAPACITY - 1
RING_ENTRY_WORDS = 2
MAX_WORKERS = 64
WORKER_WORDS = 32
STATS_BYTES = 16 * 1024

H_MAGIC, H_RING_HEAD, H_RING_TAIL, H_LOCK_OWNER, H_METHODS_LEN, H_OWNER_PID, H_CREATED_NS, \
    H_SHUTDOWN, H_TCP_PORT, H_SPINNER = range(10)

W_PID, W_WORKER_ID, W_STATE, W_STOP, W_HEARTBEAT_NS, W_BUSY_SINCE_NS, W_CALLS, W_ERRORS, \
    W_BUSY_NS, W_STARTED_NS, W_STATS_LEN, W_STATS_SEQ, W_CLIENT_PID = range(13)

# worker states
FREE, STARTING, IDLE, BUSY, STOPPING, EXITED = range(6)
STATE_NAMES = {FREE: "free", STARTING: "starting", IDLE: "idle", BUSY: "busy",
               STOPPING: "stopping", EXITED: "exited"}

RING_OFFSET = HEADER_BYTES + METHODS_BYTES
RING_WORD = RING_OFFSET // 8
WORKERS_OFFSET = RING_OFFSET + RING_CAPACITY * RING_ENTRY_WORDS * 8
STATS_OFFSET = WORKERS_OFFSET + MAX_WORKERS * WORKER_WORDS * 8
TOTAL_BYTES = STATS_OFFSET + MAX_WORKERS * STATS_BYTES

LOCK_WAIT_S = 1.0


class ServiceSegment:
    """Both sides of the call queue. `create()` is done once by whoever runs the pool."""

    def __init__(self, scope: str, service: str, segment: Segment, created: bool):
        self.scope = scope
        self.service = service
        self.seg = segment
        self.q = segment.q
        self.created = created
        self.queue_sem = open_semaphore(naming.service_semaphore(scope, service, "q"), 0 if created else None)
        self.lock_sem = open_semaphore(naming.service_semaphore(scope, service, "l"), 1 if created else None)
        self.pid = os.getpid()

    # -- life cycle -------------------------------------------------------------------
    @classmethod
    def create(cls, scope: str, service: str, description: dict) -> "ServiceSegment":
        name = naming.service_segment(scope, service)
        cls._refuse_if_running(scope, service)
        cls.unlink(scope, service)  # stale objects of a crashed run of this scope
        seg = Segment(name, TOTAL_BYTES)
        blob = msgpack.packb(description, use_bin_type=True)
        if len(blob) > METHODS_BYTES:
            seg.close()
            seg.unlink()
            raise ValueError(f"service description of {service!r} exceeds {METHODS_BYTES} bytes")
        seg.buf[HEADER_BYTES:HEADER_BYTES + len(blob)] = blob
        seg.q[H_METHODS_LEN] = len(blob)
        seg.q[H_OWNER_PID] = os.getpid()
        seg.q[H_CREATED_NS] = time.time_ns()
        self = cls(scope, service, seg, True)
        seg.q[H_MAGIC] = MAGIC  # last: openers treat a segment without magic as not ready
        return self

    @staticmethod
    def _refuse_if_running(scope: str, service: str) -> None:
        """Stale objects are swept, but a live owner's segment must never be replaced."""
        try:
            seg = Segment(naming.service_segment(scope, service))
        except posix_ipc.ExistentialError:
            return
        try:
            owner = seg.q[H_OWNER_PID] if seg.size >= TOTAL_BYTES and seg.q[H_MAGIC] == MAGIC else 0
            live = owner and owner != os.getpid() and naming.pid_alive(owner) and not seg.q[H_SHUTDOWN]
        finally:
            seg.close()
        if live:
            raise RuntimeError(f"service {service!r} is already running in scope {scope!r} "
                               f"(owned by pid {owner}); stop it or use another scope")

    @classmethod
    def open(cls, scope: str, service: str) -> "ServiceSegment":
        try:
            seg = Segment(naming.service_segment(scope, service))
        except posix_ipc.ExistentialError:
            raise ServiceUnavailable(f"service {service!r} is not running in scope {scope!r}") from None
        if seg.size < TOTAL_BYTES or seg.q[H_MAGIC] != MAGIC:
            seg.close()
            raise ServiceUnavailable(f"service {service!r} in scope {scope!r} is starting or of another version")
        try:
            return cls(scope, service, seg, False)
        except posix_ipc.ExistentialError:
            seg.close()
            raise ServiceUnavailable(f"service {service!r} in scope {scope!r} is shutting down") from None

    @staticmethod
    def unlink(scope: str, service: str) -> None:
        try:
            posix_ipc.unlink_shared_memory(naming.service_segment(scope, service))
        except posix_ipc.ExistentialError:
            pass
        for kind in ("q", "l"):
            unlink_semaphore(naming.service_semaphore(scope, service, kind))

    def close(self) -> None:
        for sem in (self.queue_sem, self.lock_sem):
            try:
                sem.close()
            except posix_ipc.Error:
                pass
        self.seg.close()

    def destroy(self) -> None:
        self.q[H_SHUTDOWN] = 1
        self.close()
        self.unlink(self.scope, self.service)

    def description(self) -> dict:
        n = self.q[H_METHODS_LEN]
        return msgpack.unpackb(bytes(self.seg.buf[HEADER_BYTES:HEADER_BYTES + n]), raw=False)

    # -- the ring ---------------------------------------------------------------------
    def _lock(self) -> None:
        try:
            self.lock_sem.acquire(LOCK_WAIT_S)
        except posix_ipc.BusyError:
            self._lock_slow()
        self.q[H_LOCK_OWNER] = self.pid

    def _unlock(self) -> None:
        self.q[H_LOCK_OWNER] = 0
        self.lock_sem.release()

    def _lock_slow(self) -> None:
        while True:
            owner = self.q[H_LOCK_OWNER]
            if owner and not naming.pid_alive(owner):
                return  # the holder was killed inside the critical section: take over
            try:
                self.lock_sem.acquire(LOCK_WAIT_S)
                return
            except posix_ipc.BusyError:
                pass

    # enqueue/dequeue run on every call: the lock is inlined, and an entry is two words,
    # (client pid << 32 | channel no) and (generation << 32 | low 32 bits of seq).
    def enqueue(self, client_pid: int, channel_no: int, gen: int, seq: int) -> bool:
        """Queue a call; False when the ring is full."""
        q = self.q
        try:
            self.lock_sem.acquire(LOCK_WAIT_S)
        except posix_ipc.BusyError:
            self._lock_slow()
        q[H_LOCK_OWNER] = self.pid
        tail = q[H_RING_TAIL]
        full = tail - q[H_RING_HEAD] >= RING_CAPACITY
        if not full:
            base = RING_WORD + (tail & RING_MASK) * RING_ENTRY_WORDS
            q[base] = client_pid << 32 | channel_no
            q[base + 1] = gen << 32 | (seq & 0xFFFFFFFF)
            q[H_RING_TAIL] = tail + 1
        q[H_LOCK_OWNER] = 0
        self.lock_sem.release()
        if full:
            return False
        self.queue_sem.release()
        return True

    def dequeue(self) -> Optional[tuple[int, int, int, int]]:
        """Take the next call after a queue_sem token was acquired:
        (client pid, channel no, generation, low 32 bits of seq)."""
        q = self.q
        try:
            self.lock_sem.acquire(LOCK_WAIT_S)
        except posix_ipc.BusyError:
            self._lock_slow()
        q[H_LOCK_OWNER] = self.pid
        head = q[H_RING_HEAD]
        if head < q[H_RING_TAIL]:
            base = RING_WORD + (head & RING_MASK) * RING_ENTRY_WORDS
            a, b = q[base], q[base + 1]
            q[H_RING_HEAD] = head + 1
            entry = (a >> 32, a & 0xFFFFFFFF, b >> 32, b & 0xFFFFFFFF)
        else:
            entry = None
        q[H_LOCK_OWNER] = 0
        self.lock_sem.release()
        return entry

    def shutting_down(self) -> bool:
        return self.q[H_SHUTDOWN] == 1

    def queue_depth(self) -> int:
        return max(0, self.q[H_RING_TAIL] - self.q[H_RING_HEAD])

    def has_queued(self) -> bool:
        return self.q[H_RING_TAIL] != self.q[H_RING_HEAD]

    # -- workers ----------------------------------------------------------------------
    @staticmethod
    def _wbase(slot: int) -> int:
        return WORKERS_OFFSET // 8 + slot * WORKER_WORDS

    def claim_slot(self, worker_id: int, pid: int = 0) -> int:
        """Reserve a free worker slot (done by the pool before starting the worker)."""
        q = self.q
        self._lock()
        try:
            for slot in range(MAX_WORKERS):
                b = self._wbase(slot)
                state = q[b + W_STATE]
                if state in (FREE, EXITED) or (q[b + W_PID] and not naming.pid_alive(q[b + W_PID])
                                               and state != STARTING):
                    for i in range(WORKER_WORDS):
                        q[b + i] = 0
                    q[b + W_STATE] = STARTING
                    q[b + W_WORKER_ID] = worker_id
                    q[b + W_PID] = pid
                    q[b + W_HEARTBEAT_NS] = time.time_ns()
                    return slot
        finally:
            self._unlock()
        raise RuntimeError(f"all {MAX_WORKERS} worker slots of {self.service!r} are in use")

    def release_slot(self, slot: int) -> None:
        self.q[self._wbase(slot) + W_STATE] = FREE

    def worker_word(self, slot: int, word: int) -> int:
        return self.q[self._wbase(slot) + word]

    def set_worker_word(self, slot: int, word: int, value: int) -> None:
        self.q[self._wbase(slot) + word] = value

    def request_stop(self, slot: int) -> None:
        self.set_worker_word(slot, W_STOP, 1)

    def workers(self) -> Iterator[dict]:
        q = self.q
        for slot in range(MAX_WORKERS):
            b = self._wbase(slot)
            state = q[b + W_STATE]
            if state == FREE:
                continue
            yield {"slot": slot, "pid": q[b + W_PID], "worker_id": q[b + W_WORKER_ID],
                   "state": STATE_NAMES.get(state, str(state)), "heartbeat_ns": q[b + W_HEARTBEAT_NS],
                   "busy_since_ns": q[b + W_BUSY_SINCE_NS], "calls": q[b + W_CALLS],
                   "errors": q[b + W_ERRORS], "busy_ns": q[b + W_BUSY_NS],
                   "started_ns": q[b + W_STARTED_NS]}

    def live_worker_count(self) -> int:
        n = 0
        for w in self.workers():
            if w["state"] in ("idle", "busy") and naming.pid_alive(w["pid"]):
                n += 1
        return n

    def write_stats(self, slot: int, stats: dict) -> None:
        blob = msgpack.packb(stats, use_bin_type=True)
        if len(blob) > STATS_BYTES:
            return  # too many methods to export; counters in the worker table still work
        off = STATS_OFFSET + slot * STATS_BYTES
        b = self._wbase(slot)
        # seqlock: odd while writing, so a reader can detect a torn read
        self.q[b + W_STATS_SEQ] += 1
        self.seg.buf[off:off + len(blob)] = blob
        self.q[b + W_STATS_LEN] = len(blob)
        self.q[b + W_STATS_SEQ] += 1

    def read_stats(self, slot: int) -> dict:
        b = self._wbase(slot)
        for _ in range(10):
            seq = self.q[b + W_STATS_SEQ]
            if seq % 2:
                continue
            n = self.q[b + W_STATS_LEN]
            off = STATS_OFFSET + slot * STATS_BYTES
            blob = bytes(self.seg.buf[off:off + n])
            if self.q[b + W_STATS_SEQ] == seq:
                return msgpack.unpackb(blob, raw=False, strict_map_key=False) if n else {}
        return {}
