"""The per-service segment: call slots, pending-call bitmap, worker table, method table, stats.

Layout 4 (all integers u64, little-endian, addressed through `Segment.q`):

    [0, 4096)             header (H_* indices below)
    [4096, +64 KiB)       method table: msgpack of ServerMethodsBase.describe()
    pending bitmap        SLOT_COUNT bits; bit i set = call slot i has a call waiting
    call slots            SLOT_COUNT x (owner = client pid << 32 | channel no, channel generation)
    worker table          MAX_WORKERS slots of WORKER_WORDS words (W_* indices)
    stats area            MAX_WORKERS x STATS_BYTES: msgpack of per-method statistics

A client channel registers once in a call slot; a call is "set the slot's pending bit, post
the queue semaphore". A worker takes a call by clearing a set bit, and claims the channel by
moving its state from REQUEST to CLAIMED. There is no ring to be left half-written and no
head/tail to be corrupted: every word a worker reads is validated (see worker_loop), and a
stale or forged bit costs one look at a channel whose state says there is nothing to do.

Two queue modes, fixed by whoever creates the segment and recorded in the header:
- MODE_ATOMIC (the compiled extension, speedysvc.shm._fastpath): bits are set and cleared
  with atomic OR/AND and channels claimed with compare-and-swap -- no lock at all, so no
  client, dead or stopped, can hold up another.
- MODE_LOCKED (the pure-Python fallback): Python has no atomic read-modify-write, so bit
  updates happen under an OFD record lock on the segment itself, which the kernel releases
  when its holder dies; every wait for it has a deadline.
Clients of either kind interoperate on both modes: pure-Python clients register in the upper
half of the slots (PURE_FIRST_SLOT..) and update its bits under the lock, compiled clients use
the lower half with atomics, so the two never write the same bitmap word (the only overlap,
a compiled worker clearing a bit while a pure client rewrites that word, can only re-set a
bit spuriously, which the channel's state makes harmless). Workers of one segment are all of
one kind (they inherit the pool's environment); a pure-Python worker refuses an atomic
segment with an error that says how to fix it.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import time
from typing import Any, Iterator, Optional

import msgpack
import posix_ipc

from .. import naming
from ..errors import CallTimeout, ProtocolError, ServiceUnavailable
from . import native
from .segment import Segment, open_semaphore, unlink_semaphore

log = logging.getLogger("speedysvc.shm")

LAYOUT = 4
MAGIC = 0x5353_5643_5356_0000 | LAYOUT  # "SSVCSV" + layout
MAGIC_MASK = 0xFFFF_FFFF_FFFF_0000
HEADER_BYTES = 4096
METHODS_BYTES = 64 * 1024
SLOT_COUNT = 4096                    # channels registered at once, per service
SLOT_WORDS = 2
S_OWNER, S_GEN = range(SLOT_WORDS)
PURE_FIRST_SLOT = SLOT_COUNT // 2    # pure-Python clients register at or above this slot
PENDING_WORDS = SLOT_COUNT // 64
MAX_WORKERS = 64
WORKER_WORDS = 32
STATS_BYTES = 16 * 1024

# header words; H_SPINNER is written by workers, so it lives on a cache line of its own
H_MAGIC, H_MODE, H_LOCK_OWNER, H_METHODS_LEN, H_OWNER_PID, H_CREATED_NS, H_SHUTDOWN, H_TCP_PORT = range(8)
H_SPINNER = 8
MODE_LOCKED, MODE_ATOMIC = 0, 1
MODE_NAMES = {MODE_LOCKED: "locked (pure Python)", MODE_ATOMIC: "atomic (compiled)"}

W_PID, W_WORKER_ID, W_STATE, W_STOP, W_HEARTBEAT_NS, W_BUSY_SINCE_NS, W_CALLS, W_ERRORS, \
    W_BUSY_NS, W_STARTED_NS, W_STATS_LEN, W_STATS_SEQ, W_CLIENT_PID = range(13)

# worker states
FREE, STARTING, IDLE, BUSY, STOPPING, EXITED = range(6)
STATE_NAMES = {FREE: "free", STARTING: "starting", IDLE: "idle", BUSY: "busy",
               STOPPING: "stopping", EXITED: "exited"}

PENDING_OFFSET = HEADER_BYTES + METHODS_BYTES
PENDING_WORD = PENDING_OFFSET // 8
PURE_PENDING_OFFSET = PENDING_OFFSET + PURE_FIRST_SLOT // 8
PURE_PENDING_END = PENDING_OFFSET + SLOT_COUNT // 8
SLOTS_OFFSET = PENDING_OFFSET + 4096
SLOTS_WORD = SLOTS_OFFSET // 8
WORKERS_OFFSET = SLOTS_OFFSET + SLOT_COUNT * SLOT_WORDS * 8
STATS_OFFSET = WORKERS_OFFSET + MAX_WORKERS * WORKER_WORDS * 8
TOTAL_BYTES = STATS_OFFSET + MAX_WORKERS * STATS_BYTES

LOCK_WAIT_S = 1.0
_NO_PENDING = bytes(PURE_PENDING_END - PURE_PENDING_OFFSET)
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux (l_pid must be 0 for OFD locks)


class QueueLock:
    """An OFD record lock on the segment's first byte: released by the kernel when the holder
    dies, so a client killed inside the critical section costs nobody anything; every wait
    has a deadline, so a stopped holder costs the callers at most their timeout.

    OFD locks belong to an open file description: threads of this process are excluded by a
    threading.Lock in front of it, and a forked child opens its own description."""

    def __init__(self, seg: Segment):
        self.seg = seg
        self._pid = os.getpid()
        self._threads = threading.Lock()
        # -1: no descriptor (the segment was opened without keep_fd, or this lock is closed);
        # fcntl then fails with EBADF
        self._fd = seg.fd if seg.fd is not None else -1

    def _fork_check(self) -> None:
        if os.getpid() != self._pid:  # the parent's description would lock for both of us
            self._pid = os.getpid()
            self._threads = threading.Lock()
            self._fd = os.open(f"/proc/self/fd/{self.seg.fd}", os.O_RDWR)

    def acquire(self, timeout: float) -> bool:
        self._fork_check()
        if not self._threads.acquire(timeout=max(timeout, 0)):
            return False
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
        deadline = time.monotonic() + timeout
        pause = 20e-6
        while True:
            try:
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, lock)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EINTR):
                    self._threads.release()
                    raise
            # F_OFD_SETLKW has no timeout; the critical sections last microseconds, so a
            # short back-off finds the lock free at once unless its holder is stopped.
            if time.monotonic() >= deadline:
                self._threads.release()
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def release(self) -> None:
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 1, 0))
        self._threads.release()

    def close(self) -> None:
        if self._fd >= 0 and self._fd != self.seg.fd:
            os.close(self._fd)
        self._fd = -1


class ServiceSegment:
    """Both sides of the call queue. `create()` is done once by whoever runs the pool."""

    def __init__(self, scope: str, service: str, segment: Segment, created: bool):
        self.scope = scope
        self.service = service
        self.seg = segment
        self.q = segment.q
        self.created = created
        self._next_pure = 0  # a pure-Python worker's scan of the pending bits starts here
        self.mode = self.q[H_MODE]
        self.queue_sem = open_semaphore(naming.service_semaphore(scope, service, "q"), 0 if created else None)
        self.lock = QueueLock(segment)
        self.pid = os.getpid()
        # the compiled path's view: raw addresses of this mapping and a sem_t of the queue
        self.fast = native.attach_service(self) if self.mode == MODE_ATOMIC else None

    # -- life cycle -------------------------------------------------------------------
    @classmethod
    def create(cls, scope: str, service: str, description: dict[str, Any],
               mode: Optional[int] = None) -> "ServiceSegment":
        name = naming.service_segment(scope, service)
        cls._refuse_if_running(scope, service)
        cls.unlink(scope, service)  # stale objects of a crashed run of this scope
        if mode is None:
            mode = MODE_ATOMIC if native.active() else MODE_LOCKED
        if mode == MODE_ATOMIC and not native.active():
            raise RuntimeError(f"cannot create an atomic call queue: {native.reason()}")
        blob = msgpack.packb(description, use_bin_type=True)
        if len(blob) > METHODS_BYTES:
            raise ValueError(f"service description of {service!r} exceeds {METHODS_BYTES} bytes")
        seg = Segment(name, TOTAL_BYTES, keep_fd=True)
        seg.buf[HEADER_BYTES:HEADER_BYTES + len(blob)] = blob
        seg.q[H_METHODS_LEN] = len(blob)
        seg.q[H_OWNER_PID] = os.getpid()
        seg.q[H_CREATED_NS] = time.time_ns()
        seg.q[H_MODE] = mode
        self = cls(scope, service, seg, True)
        seg.q[H_MAGIC] = MAGIC  # last: openers treat a segment without magic as not ready
        return self

    @staticmethod
    def _refuse_if_running(scope: str, service: str) -> None:
        """Stale objects are swept, but a live owner's segment must never be replaced."""
        try:
            seg = Segment(naming.service_segment(scope, service))
        except (posix_ipc.ExistentialError, ValueError):
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
            seg = Segment(naming.service_segment(scope, service), keep_fd=True)
        except posix_ipc.ExistentialError:
            raise ServiceUnavailable(f"service {service!r} is not running in scope {scope!r}") from None
        except ValueError:  # created, not sized yet
            raise ServiceUnavailable(f"service {service!r} in scope {scope!r} is starting") from None
        magic = seg.q[H_MAGIC] if seg.size >= 8 else 0
        if seg.size < TOTAL_BYTES or magic != MAGIC:
            seg.close()
            if magic & MAGIC_MASK == MAGIC & MAGIC_MASK:
                raise ProtocolError(
                    f"service {service!r} in scope {scope!r} uses shared-memory layout {magic & 0xFFFF}, "
                    f"this speedysvc uses layout {LAYOUT}: run the same speedysvc version on both sides")
            raise ServiceUnavailable(f"service {service!r} in scope {scope!r} is starting or of another version")
        if seg.q[H_MODE] not in MODE_NAMES:
            seg.close()
            raise ProtocolError(f"the header of service {service!r} in scope {scope!r} is corrupted "
                                f"(queue mode {seg.q[H_MODE]}); restart the service")
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
        for kind in ("q", "l"):  # "l": the lock semaphore of layout 3, swept if found
            unlink_semaphore(naming.service_semaphore(scope, service, kind))

    def close(self) -> None:
        if self.fast is not None:
            self.fast.release()
            self.fast = None
        try:
            self.queue_sem.close()
        except posix_ipc.Error:
            pass
        self.lock.close()
        self.seg.close()

    def destroy(self) -> None:
        self.q[H_SHUTDOWN] = 1
        self.close()
        self.unlink(self.scope, self.service)

    def replaced(self) -> bool:
        """True when the service's name now refers to another segment (or to none): its
        owner was stopped, or killed and started again."""
        return self.seg.replaced()

    def owner_alive(self) -> bool:
        return naming.pid_alive(self.q[H_OWNER_PID])

    def description(self) -> dict[str, Any]:
        n = self.q[H_METHODS_LEN]
        where = f"service {self.service!r} in scope {self.scope!r}"
        if n > METHODS_BYTES:
            raise ProtocolError(f"the method table of {where} is corrupted (length {n} > {METHODS_BYTES}); "
                                f"restart the service")
        try:
            found = msgpack.unpackb(bytes(self.seg.buf[HEADER_BYTES:HEADER_BYTES + n]), raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ProtocolError(f"the method table of {where} is corrupted ({type(exc).__name__}: {exc}); "
                                f"restart the service") from None
        if not (isinstance(found, dict) and isinstance(found.get("methods"), dict)
                and all(isinstance(m, dict) and isinstance(m.get("encoder"), str)
                        for m in found["methods"].values())):
            raise ProtocolError(f"the method table of {where} is corrupted (not a service description); "
                                f"restart the service")
        return found

    # -- call slots and the pending bitmap (pure-Python side; _fastpath does the atomic one) --
    def _locked(self, deadline: float, what: str) -> None:
        if not self.lock.acquire(deadline - time.monotonic()):
            raise CallTimeout(f"the call queue of {self.service!r} stayed locked (by pid "
                              f"{self.q[H_LOCK_OWNER]}, which may be stopped) while {what}")
        self.q[H_LOCK_OWNER] = self.pid

    def _unlock(self) -> None:
        self.q[H_LOCK_OWNER] = 0
        self.lock.release()

    def register(self, pid: int, no: int, gen: int, deadline: float) -> Optional[int]:
        """Reserve a call slot for a channel (pure-Python clients: upper half). None when every
        slot belongs to a live channel."""
        if self.fast is not None:  # a compiled client: lower half, compare-and-swap
            slot = self.fast.register(pid, no, gen)
            return None if slot < 0 else slot
        q = self.q
        first = SLOTS_WORD + PURE_FIRST_SLOT * SLOT_WORDS
        self._locked(deadline, "registering a channel")
        try:
            owners = q[first:SLOTS_WORD + SLOT_COUNT * SLOT_WORDS:SLOT_WORDS].tolist()
            try:
                i = owners.index(0)
            except ValueError:
                dead = next((k for k, o in enumerate(owners) if not naming.pid_alive(o >> 32)), None)
                if dead is None:
                    return None
                i = dead
            base = first + i * SLOT_WORDS
            q[base + S_GEN] = gen
            q[base + S_OWNER] = pid << 32 | no
            return PURE_FIRST_SLOT + i
        finally:
            self._unlock()

    def set_slot_gen(self, slot: int, gen: int) -> None:
        self.q[SLOTS_WORD + slot * SLOT_WORDS + S_GEN] = gen

    def unregister(self, slot: int, owner: int) -> None:
        """Free a slot (one word store; registrations only ever take a zero or dead owner)."""
        word = SLOTS_WORD + slot * SLOT_WORDS + S_OWNER
        if 0 <= slot < SLOT_COUNT and self.q[word] == owner and not self.seg.closed:
            self.q[word] = 0

    def post(self, slot: int, deadline: float) -> None:
        """Mark the slot's call as waiting and wake a worker."""
        if self.fast is not None:
            self.fast.post(slot)
            return
        word = PENDING_WORD + (slot >> 6)
        self._locked(deadline, "queueing a call")
        q = self.q
        q[word] = q[word] | 1 << (slot & 63)
        self._unlock()
        self.queue_sem.release()

    def has_pending(self) -> bool:
        return self.seg.buf[PURE_PENDING_OFFSET:PURE_PENDING_END] != _NO_PENDING

    def take(self, timeout: float = LOCK_WAIT_S) -> Optional[tuple[int, int, int]]:
        """A pure-Python worker's dequeue: clear one pending bit and return (slot, owner, gen),
        or None. Scans from the slot after the last one taken, so no channel starves."""
        if self.mode != MODE_LOCKED:
            raise RuntimeError(native.mismatch_message(self.service))
        buf = self.seg.buf
        if buf[PURE_PENDING_OFFSET:PURE_PENDING_END] == _NO_PENDING:
            return None
        if not self.lock.acquire(timeout):
            return None
        q = self.q
        q[H_LOCK_OWNER] = self.pid
        try:
            bits = int.from_bytes(buf[PURE_PENDING_OFFSET:PURE_PENDING_END], "little")
            if not bits:
                return None
            # start after the slot taken last, wrapping: busy low slots cannot starve others
            later = bits >> self._next_pure
            if later:
                low = self._next_pure + (later & -later).bit_length() - 1
            else:
                low = (bits & -bits).bit_length() - 1
            self._next_pure = low + 1
            slot = PURE_FIRST_SLOT + low
            word = PENDING_WORD + (slot >> 6)
            q[word] = q[word] & ~(1 << (slot & 63))
            base = SLOTS_WORD + slot * SLOT_WORDS
            return slot, q[base + S_OWNER], q[base + S_GEN]
        finally:
            self._unlock()

    def shutting_down(self) -> bool:
        return self.q[H_SHUTDOWN] == 1

    def queue_depth(self) -> int:
        """Calls waiting for a worker."""
        return bin(int.from_bytes(self.seg.buf[PENDING_OFFSET:PURE_PENDING_END], "little")).count("1")

    # -- workers ----------------------------------------------------------------------
    @staticmethod
    def worker_base(slot: int) -> int:
        """Index in `q` of the first word of a worker slot's row in the worker table."""
        return WORKERS_OFFSET // 8 + slot * WORKER_WORDS

    @staticmethod
    def worker_word_index(slot: int, word: int) -> int:
        """Index in `q` of one word (W_STATE, W_STOP, ...) of a worker slot's row."""
        return WORKERS_OFFSET // 8 + slot * WORKER_WORDS + word

    def claim_slot(self, worker_id: int, pid: int = 0) -> int:
        """Reserve a free worker slot (done by the pool before starting the worker)."""
        q = self.q
        self._locked(time.monotonic() + 10, "claiming a worker slot")
        try:
            for slot in range(MAX_WORKERS):
                b = self.worker_base(slot)
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
        self.q[self.worker_base(slot) + W_STATE] = FREE

    def worker_word(self, slot: int, word: int) -> int:
        return self.q[self.worker_base(slot) + word]

    def set_worker_word(self, slot: int, word: int, value: int) -> None:
        self.q[self.worker_base(slot) + word] = value

    def request_stop(self, slot: int) -> None:
        self.set_worker_word(slot, W_STOP, 1)

    def workers(self) -> Iterator[dict[str, Any]]:
        q = self.q
        for slot in range(MAX_WORKERS):
            b = self.worker_base(slot)
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

    def write_stats(self, slot: int, stats: dict[str, Any]) -> None:
        blob = msgpack.packb(stats, use_bin_type=True)
        if len(blob) > STATS_BYTES:
            return  # too many methods to export; counters in the worker table still work
        off = STATS_OFFSET + slot * STATS_BYTES
        b = self.worker_base(slot)
        # seqlock: odd while writing, so a reader can detect a torn read
        self.q[b + W_STATS_SEQ] += 1
        self.seg.buf[off:off + len(blob)] = blob
        self.q[b + W_STATS_LEN] = len(blob)
        self.q[b + W_STATS_SEQ] += 1

    def read_stats(self, slot: int) -> dict[str, Any]:
        b = self.worker_base(slot)
        for _ in range(10):
            seq = self.q[b + W_STATS_SEQ]
            if seq % 2:
                continue
            n = self.q[b + W_STATS_LEN]
            if n > STATS_BYTES:
                return {}
            off = STATS_OFFSET + slot * STATS_BYTES
            blob = bytes(self.seg.buf[off:off + n])
            if self.q[b + W_STATS_SEQ] == seq:
                try:
                    return msgpack.unpackb(blob, raw=False, strict_map_key=False) if n else {}
                except (ValueError, msgpack.UnpackException):
                    return {}
        return {}
