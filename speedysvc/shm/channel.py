"""Per-client-thread call channels.

A channel is a segment owned by one client thread plus a semaphore the worker posts when the
reply is ready. The request is written at DATA_OFFSET, the reply right after it (so a
zero-copy argument is never overwritten by its own reply). A request too large for the
channel makes the client grow it (a new generation of the segment); a reply too large makes
the worker write it to a one-off overflow segment, and the client grows the channel so that
the next reply of that size fits inline.

Waiting is a bounded spin on the state word, then a blocking wait on the semaphore; the spin
is only used on x86-64, whose memory model orders the plain stores the worker makes.
"""
from __future__ import annotations

import itertools
import os
import platform
import threading
import time
from collections import OrderedDict
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Callable, Optional

import posix_ipc

from .. import naming, serialisers
from ..errors import CallTimeout, ProtocolError, ServiceUnavailable, WorkerDied
from ..serialisers import Parts
from . import native
from .segment import Segment, open_semaphore

if TYPE_CHECKING:
    from .service_segment import ServiceSegment

Decode = Callable[[memoryview], Any]  # turns a reply (status header + body) into the result

C_STATE, C_SEQ, C_REQ_LEN, C_RESP_LEN, C_WORKER_PID, C_CLIENT_PID, C_OVERFLOW, C_RESP_OFFSET, C_CLOSED = range(9)
DATA_OFFSET = 128
IDLE, REQUEST, CLAIMED, REPLY, ABANDONED = range(5)

INITIAL_CAPACITY = 256 * 1024
# The most a waiting side spins before blocking. The Python path spins only on x86-64, whose
# memory model orders the plain stores the other side makes; the compiled path uses atomics
# and a pause instruction on every architecture.
SPIN_NS = int(os.environ.get("SPEEDYSVC_SPIN_US", "100")) * 1000 \
    if platform.machine() in ("x86_64", "AMD64") else 0
NATIVE_SPIN_NS = int(os.environ.get("SPEEDYSVC_SPIN_US", "100")) * 1000
MAX_SKIP = 1024
POLL_S = 0.2  # how often a waiting client checks on the worker and the deadline
LOCK_WAIT_DEFAULT_S = 60.0  # calls without a timeout still bound their wait for the queue lock


class SpinState:
    """Adaptive spinning, one per waiting side (the compiled path has the same rule in C).

    A spin only pays when the peer answers within it and has a core of its own. Successful
    spins size the next ones (twice the recent successful waits). A spin that catches nothing,
    or only after half the maximum, means the peer is slow or has no core -- on a busy or
    small machine a spinner takes the core its peer needs -- so this side then blocks at once
    for the next 1, 2, 4, ... MAX_SKIP waits, and the wait after that probes a little further
    than usual. Spinning thus fades
    out under contention and on an idle service, and comes back when the peer is fast again.
    """

    __slots__ = ("max_ns", "ok_ns", "skip", "level", "probe")

    def __init__(self, max_ns: int = SPIN_NS):
        self.max_ns = max_ns
        self.ok_ns = max_ns // 4
        self.skip = self.level = 0
        self.probe = False

    def budget(self) -> int:
        if self.max_ns <= 0:
            return 0
        if self.skip:
            self.skip -= 1
            self.probe = self.skip == 0
            return 0
        # a probe looks a little further than usual: far enough to see a fast peer again,
        # not so far that a failed probe shows in the tail
        if self.probe:
            return min(self.max_ns, 4 * self.ok_ns + 8_000)
        return min(self.max_ns, 2 * self.ok_ns + 2_000)

    def result(self, budget: int, caught: bool, waited_ns: int) -> None:
        if budget <= 0:
            return
        self.probe = False
        # a reply caught only after a long spin is no success: the spin probably kept the
        # peer from the core it needed
        if caught and waited_ns <= self.max_ns // 2:
            self.level = 0
            self.ok_ns = (self.ok_ns * 3 + waited_ns) >> 2
        else:
            self.level = min(self.level * 2, MAX_SKIP) if self.level else 1
            self.skip = self.level


_channel_numbers = itertools.count(1)


def _align(n: int) -> int:
    return (n + 63) & ~63


def write_parts(buf: memoryview, offset: int, parts: Parts) -> int:
    for part in parts:
        if part.__class__ is bytes:
            n = len(part)
            buf[offset:offset + n] = part
        else:
            part = memoryview(part).cast("B")
            n = part.nbytes
            buf[offset:offset + n] = part
        offset += n
    return offset



class SegmentReplaced(Exception):
    """The service's segment was replaced (its owner was killed and started again) while this
    call waited unclaimed: the caller follows it to the new segment and sends the call again,
    which is safe because no worker ever took it."""


class ClientChannel:
    """Owned by one thread of one client process; not thread-safe by design."""

    # Closing keeps the (closed) segment: `seg` is never None, so the call path needs no check.
    seg: Segment
    _unclaimed_since: Optional[float] = None

    def __init__(self, scope: str, capacity: int = INITIAL_CAPACITY):
        self.scope = scope
        self.pid = os.getpid()
        self.no = next(_channel_numbers)
        self.gen = 0
        self.seq = 0
        self.want_capacity = capacity
        self.busy = False        # inside call(): only the owning thread may unmap
        self.closing = False     # close requested by another thread
        self._close_lock = threading.Lock()
        self.spin = SpinState()
        self.sem = open_semaphore(naming.channel_base(scope, self.pid, self.no), 0)
        self.closed = False
        self.service: Optional[ServiceSegment] = None  # the one this channel has a call slot in
        self.slot = -1
        self.fast: Any = None    # the compiled view of this channel (native path)
        self._map_segment(capacity)

    def _new_segment(self, capacity: int) -> None:
        """Replace the segment with a new generation of `capacity` bytes."""
        if self.fast is not None:
            self.fast.release()
            self.fast = None
        self.seg.close()
        self.seg.unlink()
        self._map_segment(capacity)

    def _map_segment(self, capacity: int) -> None:
        self.gen += 1
        self.seg = Segment(naming.channel_segment(self.scope, self.pid, self.no, self.gen),
                           DATA_OFFSET + capacity)
        self.seg.q[C_CLIENT_PID] = self.pid
        # requests up to this size leave at least a quarter of the channel for the reply
        self.capacity = self.seg.size - DATA_OFFSET
        self.request_limit = self.capacity * 3 // 4
        if self.service is not None:
            self.service.set_slot_gen(self.slot, self.gen)

    def swept(self) -> bool:
        """True when this channel's objects were removed under it (a supervisor starting in
        its scope sweeps what the killed one left, live clients' channels included)."""
        if self.closed:
            return True
        sem_file = f"/dev/shm/sem.{naming.channel_base(self.scope, self.pid, self.no).lstrip('/')}"
        return self.seg.replaced() or not os.path.exists(sem_file)

    @property
    def owner(self) -> int:
        return self.pid << 32 | self.no

    def call(self, service: ServiceSegment, parts: Parts, size: Optional[int], decode: Decode,
             timeout: Optional[float], unavailable_after: float, decoder: Any = None) -> Any:
        """Send one request through `service` (a ServiceSegment) and decode the reply.

        `decoder` (compiled path): what _fastpath's call_decoded() decodes a usual reply with --
        `bytes` for a raw method, msgpack's unpacker for a msgpack one; None: `decode` does it."""
        self.busy = True
        try:
            fast = self.fast
            if fast is not None and service is self.service and not self.closing \
                    and self.want_capacity <= self.capacity:
                # the steady state of the compiled path, kept flat: one C call does the rest
                self.seq = seq = self.seq + 1
                if decoder is not None:
                    try:
                        return fast.call_decoded(service.fast, self.slot, parts, seq, self.request_limit,
                                                 POLL_S, decoder)
                    except native.NotDecoded as unusual:  # an error reply, a code: finished below
                        reply = unusual.args[0]
                else:
                    reply = fast.call(service.fast, self.slot, parts, seq, self.request_limit, POLL_S)
                if reply.__class__ is int:
                    return self._fast_not_done(reply, service, parts, size, decode, timeout, unavailable_after)
                try:
                    return decode(reply)
                finally:
                    reply.release()
            return self._call(service, parts, size, decode, timeout, unavailable_after)
        finally:
            self.busy = False
            if self.closing:
                self.close()

    def _register(self, service: ServiceSegment, timeout: Optional[float]) -> None:
        """Take a call slot in `service` (once per channel and service segment); when every
        slot belongs to a live client, wait for one within the timeout."""
        self._unregister()
        started = time.monotonic()
        deadline = started + (LOCK_WAIT_DEFAULT_S if timeout is None else timeout)
        while True:
            slot = service.register(self.pid, self.no, self.gen, deadline)
            if slot is not None:
                self.service, self.slot = service, slot
                return
            if timeout is not None and time.monotonic() >= deadline:
                raise CallTimeout(f"the call slots of {service.service!r} stayed full for {timeout:g}s "
                                  f"(every slot belongs to a live client)")
            deadline = max(deadline, time.monotonic() + 0.1) if timeout is None else deadline
            time.sleep(0.001)

    def _unregister(self) -> None:
        if self.service is not None:
            try:
                self.service.unregister(self.slot, self.owner)
            except (ValueError, IndexError):  # its mapping is already gone
                pass
            self.service, self.slot = None, -1

    def _call(self, service: ServiceSegment, parts: Parts, size: Optional[int], decode: Decode,
              timeout: Optional[float], unavailable_after: float) -> Any:
        if self.closing:
            raise ServiceUnavailable("the client was closed")
        if self.want_capacity > self.capacity:
            self._new_segment(self.want_capacity)
        if service is not self.service:
            self._register(service, timeout)
        seg = self.seg
        if service.fast is not None:  # the compiled path: write, enqueue, spin, wait below the GIL
            fast = self.fast
            if fast is None:
                fast = self.fast = native.channel(seg, self.sem.name)
            self.seq = seq = self.seq + 1
            reply = fast.call(service.fast, self.slot, parts, seq, self.request_limit, POLL_S)
            if reply.__class__ is int:
                return self._fast_not_done(reply, service, parts, size, decode, timeout, unavailable_after)
            try:
                return decode(reply)
            finally:
                reply.release()
        if size is None:
            size = serialisers.parts_size(parts)
        if size > self.request_limit:
            self._new_segment(max(self.want_capacity, 2 * _align(size) + 4096))
            seg = self.seg
        q = seg.q
        write_parts(seg.buf, DATA_OFFSET, parts)
        self.seq = seq = self.seq + 1
        q[C_REQ_LEN] = size
        q[C_SEQ] = seq
        q[C_STATE] = REQUEST
        try:
            service.post(self.slot, time.monotonic() + (LOCK_WAIT_DEFAULT_S if timeout is None else timeout))
        except BaseException:
            q[C_STATE] = IDLE  # never queued
            raise
        started = perf_counter_ns()
        budget = self.spin.budget()
        if budget:
            end = started + budget
            while q[C_STATE] != REPLY and perf_counter_ns() < end:
                pass
        caught = q[C_STATE] == REPLY
        if caught:
            try:  # consume the worker's post, which follows its state change at once
                self.sem.acquire(POLL_S)
            except posix_ipc.BusyError:
                pass
        else:
            self._wait(service, seq, timeout, unavailable_after)
        self.spin.result(budget, caught, perf_counter_ns() - started)
        return self._take_reply(decode)

    def _wait(self, service: ServiceSegment, seq: int, timeout: Optional[float],
              unavailable_after: float) -> None:
        q = self.seg.q
        start = time.monotonic()
        self._unclaimed_since = None
        while True:
            try:
                self.sem.acquire(POLL_S)
                if q[C_STATE] == REPLY and q[C_SEQ] == seq:
                    return
                continue  # a stale post from an earlier call; keep waiting
            except posix_ipc.BusyError:
                pass
            if self._check(service, seq, start, timeout, unavailable_after):
                return

    def _fast_not_done(self, code: int, service: ServiceSegment, parts: Parts, size: Optional[int],
                       decode: Decode, timeout: Optional[float], unavailable_after: float) -> Any:
        """fast.call() returned a code: the request did not fit, the reply overflowed, or the
        call is still running (then wait, checking on the worker and the deadline)."""
        if code == -3:  # longer than the channel allows: grow it, send again
            self.seq -= 1
            size = serialisers.parts_size(parts) if size is None else size
            self._new_segment(max(self.want_capacity, 2 * _align(size) + 4096))
            return self._call(service, parts, size, decode, timeout, unavailable_after)
        return self.resume(code, self.seq, service, decode, timeout, unavailable_after)

    def resume(self, code: int, seq: int, service: ServiceSegment, decode: Decode, timeout: Optional[float],
               unavailable_after: float) -> Any:
        """Finish a call the compiled path sent as `seq` and left with `code`: 0, not replied
        within the first poll (wait, checking on the worker and the deadline), or -1, a reply
        in an overflow segment. Also used by _fastpath's Callers (SHMClient.bound_method)."""
        reply: Any = code  # after the wait: the reply (a view of the channel), or -1 (overflow)
        if code == 0:
            self._wait_fast(service, seq, timeout, unavailable_after)
            reply = self.fast.reply()
        if reply == -1:
            return self._take_overflow(decode)
        try:
            return decode(reply)
        finally:
            reply.release()

    def _wait_fast(self, service: ServiceSegment, seq: int, timeout: Optional[float],
                   unavailable_after: float) -> None:
        start = time.monotonic() - POLL_S  # call() has waited one poll already
        self._unclaimed_since = None
        wait = self.fast.wait
        while not self._check(service, seq, start, timeout, unavailable_after):
            if wait(seq, POLL_S):
                return

    def _check(self, service: ServiceSegment, seq: int, start: float, timeout: Optional[float],
               unavailable_after: float) -> bool:
        """Every POLL_S of waiting: True once replied; raises when the call cannot complete."""
        q = self.seg.q
        state = q[C_STATE]
        if state == REPLY:
            return True  # replied, post still in flight
        if self.closing:
            self.abandon()
            raise ServiceUnavailable(f"the client of {service.service!r} was closed during the call")
        now = time.monotonic()
        if state == CLAIMED:
            self._unclaimed_since = None
            worker = q[C_WORKER_PID]
            if worker and not naming.pid_alive(worker):
                self.abandon()
                raise WorkerDied(f"worker {worker} of {service.service!r} died during the call; "
                                 f"the call was not retried")
        elif state == REQUEST:
            if service.shutting_down() or service.live_worker_count() == 0:
                if service.replaced():
                    q[C_STATE] = IDLE  # withdrawn: nobody serves the old segment any more
                    self._unregister()
                    self._unclaimed_since = None
                    raise SegmentReplaced()
                self._unclaimed_since = self._unclaimed_since or now
                if now - self._unclaimed_since >= unavailable_after:
                    self._unclaimed_since = None
                    self.abandon()
                    raise ServiceUnavailable(
                        f"service {service.service!r} has no running worker (waited "
                        f"{unavailable_after:.1f}s)")
            else:
                self._unclaimed_since = None
        if timeout is not None and now - start >= timeout:
            self._unclaimed_since = None
            self.abandon()
            raise CallTimeout(f"call to {service.service!r} timed out after {timeout:g}s")
        return False

    def _take_reply(self, decode: Decode) -> Any:
        q = self.seg.q
        if q[C_OVERFLOW]:
            return self._take_overflow(decode)
        n = q[C_RESP_LEN]
        off = q[C_RESP_OFFSET]
        q[C_STATE] = IDLE
        if off < DATA_OFFSET or off > self.seg.size or n > self.seg.size - off:
            raise ProtocolError(f"reply of {n} bytes at offset {off} lies outside the channel")
        view = self.seg.buf[off:off + n]
        try:
            return decode(view)
        finally:
            view.release()

    def _take_overflow(self, decode: Decode) -> Any:
        q = self.seg.q
        n = q[C_RESP_LEN]
        overflow = q[C_OVERFLOW]
        q[C_STATE] = IDLE
        name = naming.channel_overflow(self.scope, self.pid, self.no, overflow)
        try:
            seg = Segment(name)
        except (posix_ipc.ExistentialError, ValueError) as exc:
            raise ProtocolError(f"the reply's overflow segment {name} is unusable ({exc})") from None
        seg.unlink()
        if n > seg.size:
            seg.close()
            raise ProtocolError(f"reply of {n} bytes does not fit its overflow segment of {seg.size}")
        self.want_capacity = max(self.want_capacity, _align(q[C_REQ_LEN]) + n + 4096)
        view = seg.buf[:n]
        try:
            return decode(view)
        finally:
            view.release()
            seg.close()

    def abandon(self) -> None:
        """Give up on this channel: a late reply must not reach the next call."""
        if not self.closed:
            self.seg.q[C_STATE] = ABANDONED
        self.close()

    def request_close(self) -> None:
        """Close from any thread: a call in progress in the owning thread is ended first."""
        self.closing = True
        fast = self.fast
        if fast is not None:
            fast.close_requested = 1  # a Caller inside a call closes it when the call ends
        if not self.busy and not (fast is not None and fast.busy):
            self.close()

    def close(self) -> None:
        with self._close_lock:
            self._close()

    def _close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child's copy: the channel is the parent's to close
        self._unregister()
        if self.fast is not None:
            self.fast.release()
            self.fast = None
        if not self.closed:
            self.seg.q[C_CLOSED] = 1  # lets workers drop their mapping of it promptly
            self.seg.close()
            self.seg.unlink()
            self.closed = True
        if self.sem is not None:
            try:
                self.sem.unlink()
            except posix_ipc.ExistentialError:
                pass
            self.sem.close()
            self.sem = None


class BadChannel(Exception):
    """A call slot named something that is not a usable channel (garbage, or a rogue's)."""


MIN_CHANNEL_BYTES = DATA_OFFSET + 64


class WorkerChannels:
    """The worker's view of client channels: an LRU of mapped segments and semaphores."""

    def __init__(self, scope: str, max_open: int = 256, compiled: bool = False):
        self.scope = scope
        self.max_open = max_open
        self.compiled = compiled  # entries hold a _fastpath.Channel instead of a semaphore
        # owner (client pid << 32 | channel no) -> (generation, segment, semaphore or Channel);
        # the compiled worker looks channels up here itself (_fastpath.Worker.next)
        self.open: OrderedDict[int, tuple[int, Segment, Any]] = OrderedDict()

    def get(self, pid: int, no: int, gen: int) -> Optional[tuple[Segment, Any]]:
        """The channel's segment and its semaphore (compiled: its _fastpath.Channel), mapped
        and cached; None when the client went away."""
        key = pid << 32 | no
        entry = self.open.get(key)
        if entry is not None and entry[0] == gen:
            self.open.move_to_end(key)
            return entry[1], entry[2]
        if entry is not None:
            self._drop(key)
        name = naming.channel_segment(self.scope, pid, no, gen)
        try:
            seg = Segment(name)
        except posix_ipc.ExistentialError:
            return None  # the client went away
        except (ValueError, OSError, posix_ipc.Error) as exc:
            raise BadChannel(f"channel {name} cannot be mapped ({exc})") from None
        if seg.size < MIN_CHANNEL_BYTES or seg.q[C_CLIENT_PID] != pid:
            size, client = seg.size, seg.q[C_CLIENT_PID] if seg.size >= DATA_OFFSET else None
            seg.close()
            raise BadChannel(f"channel {name} is not a channel (size {size}, client pid word {client})")
        try:
            if self.compiled:
                sem = native.channel(seg, naming.channel_base(self.scope, pid, no))
            else:
                sem = open_semaphore(naming.channel_base(self.scope, pid, no))
        except (posix_ipc.ExistentialError, FileNotFoundError):
            seg.close()
            return None
        except (ValueError, OSError, posix_ipc.Error) as exc:
            seg.close()
            raise BadChannel(f"semaphore of channel {name} cannot be opened ({exc})") from None
        self.open[key] = (gen, seg, sem)
        while len(self.open) > self.max_open:
            self._drop(next(iter(self.open)))
        return seg, sem

    def prune(self) -> None:
        """Unmap every channel whose client closed or abandoned it, or died."""
        for key in list(self.open):
            seg = self.open[key][1]
            if seg.q[C_CLOSED] or seg.q[C_STATE] == ABANDONED or not naming.pid_alive(key >> 32):
                self._drop(key)

    def prune_oldest(self) -> None:
        """Cheap per-call pruning: look only at the least recently used channel."""
        if len(self.open) > 1:
            key = next(iter(self.open))
            if self.open[key][1].q[C_CLOSED]:
                self._drop(key)

    def _drop(self, key: int) -> None:
        _, seg, sem = self.open.pop(key)
        if self.compiled:
            sem.release()
        seg.close()
        if not self.compiled:
            try:
                sem.close()
            except posix_ipc.Error:
                pass

    def close(self) -> None:
        for key in list(self.open):
            self._drop(key)


def write_overflow(scope: str, pid: int, no: int, seq: int, parts: Parts, size: int) -> bool:
    """A reply too big for the channel goes to a one-off segment the client maps and unlinks."""
    try:
        overflow = Segment(naming.channel_overflow(scope, pid, no, seq), max(size, 1), exclusive=False)
    except posix_ipc.Error:
        return False
    try:
        write_parts(overflow.buf, 0, parts)
    finally:
        overflow.close()
    return True
