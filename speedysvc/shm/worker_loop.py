"""The worker's main loop: wait for a queued call, serve it, keep the worker table current."""
from __future__ import annotations

import logging
import os
import threading
import time
from time import time_ns
from typing import Any, Optional

import posix_ipc

from .. import dispatch, serialisers
from ..dispatch import Dispatcher
from ..monitoring.latency_histogram import LOWER_NS, MIN_BUCKET
from . import service_segment as ss
from ..serialisers import Parts, parts_size
from .channel import (C_OVERFLOW, C_REQ_LEN, C_RESP_LEN, C_RESP_OFFSET, C_SEQ, C_STATE,
                      C_WORKER_PID, ABANDONED, CLAIMED, DATA_OFFSET, REPLY, REQUEST, BadChannel,
                      SpinState, WorkerChannels, write_overflow, write_parts)
from .segment import Segment
from .events import EventRing
from . import native
from .native import mismatch_message as native_mismatch

IDLE_WAIT_S = 0.5      # heartbeat and stop-flag cadence of an idle worker
BATCH_S = 0.02         # longest the compiled loop serves calls before this loop looks at its stop flag
STATS_EVERY_NS = 1_000_000_000
REPORT_FIRST = 20      # garbage in shared memory: the first reports are all logged,
REPORT_EVERY_S = 1.0   # then at most one this often

log = logging.getLogger("speedysvc.shm")


def _channel_ids(name: str) -> tuple[int, int]:
    """(client pid, channel no) from a channel segment's name (naming.channel_segment)."""
    pid, _, rest = name.rpartition("_c")[2].partition("x")
    return int(pid), int(rest.partition("g")[0])


class Publisher:
    """What ServerMethodsBase.publish() calls: msgpack-encodes the payload into the event ring."""

    def __init__(self, ring: EventRing):
        self.ring = ring
        self.lock = threading.Lock()  # in-process services publish from several threads

    def publish(self, topic: str, payload: Any) -> int:
        data = serialisers.join_parts(serialisers.CONTROL.encode(payload))
        with self.lock:
            return self.ring.publish(topic, data)


class ShmWorker:
    def __init__(self, dispatcher: Dispatcher, segment: ss.ServiceSegment, slot: int, worker_id: int,
                 stop_event: Optional[threading.Event] = None):
        self.dispatcher = dispatcher
        self.seg = segment
        self.slot = slot
        self.worker_id = worker_id
        self.stop_event = stop_event or threading.Event()
        self.compiled = segment.mode == ss.MODE_ATOMIC
        self.channels = WorkerChannels(segment.scope, compiled=self.compiled)
        self.pid = os.getpid()
        self.wbase = segment.worker_base(slot)
        self.spin = SpinState()
        self.garbage = 0
        self._next_report = 0.0

    def stop_requested(self) -> bool:
        return (self.stop_event.is_set() or self.seg.worker_word(self.slot, ss.W_STOP) == 1
                or self.seg.shutting_down())

    def run(self) -> None:
        seg, slot = self.seg, self.slot
        if self.compiled and seg.fast is None:
            raise RuntimeError(native_mismatch(seg.service))
        if self.compiled:
            return self._run_compiled()
        seg.set_worker_word(slot, ss.W_PID, self.pid)
        seg.set_worker_word(slot, ss.W_WORKER_ID, self.worker_id)
        seg.set_worker_word(slot, ss.W_STARTED_NS, time.time_ns())
        seg.set_worker_word(slot, ss.W_HEARTBEAT_NS, time.time_ns())
        seg.set_worker_word(slot, ss.W_STATE, ss.IDLE)
        next_stats = 0
        drain = False
        try:
            while not self.stop_requested():
                now = time.time_ns()
                seg.set_worker_word(slot, ss.W_HEARTBEAT_NS, now)
                if now >= next_stats:
                    seg.write_stats(slot, self.dispatcher.export_stats())
                    next_stats = now + STATS_EVERY_NS
                if not drain and not self._wait_for_call():
                    self.channels.prune()
                    if not seg.has_pending():
                        continue
                    # a call without its wake-up (its client died between the two): take it
                entry = seg.take()
                if entry is not None:
                    self._serve(entry)
                # calls still pending are taken before waiting again (a surplus wake-up later
                # finds nothing, harmlessly): garbage bits cannot ration real calls' turns
                drain = entry is not None and seg.has_pending()
        finally:
            seg.write_stats(slot, self.dispatcher.export_stats())
            seg.set_worker_word(slot, ss.W_STATE, ss.EXITED)
            self.channels.close()

    def _run_compiled(self) -> None:
        """The compiled path: waiting, dequeue, claim, reply and the worker table are in C, and
        so is the whole of a raw or plain msgpack call (Worker.serve); this loop does the rest:
        channels seen for the first time, other encoders, overflow replies, statistics."""
        seg, slot = self.seg, self.slot
        w = native.ext().Worker(seg.fast, slot)
        dispatcher = self.dispatcher
        w.set_dispatch(dispatcher.fast, dispatcher.complete, serialisers.UNPACK_PLAIN,
                       serialisers.plain_packer(), tuple(LOWER_NS), MIN_BUCKET, dispatch.RAW_CODE,
                       dispatch.MSGPACK_CODE, seg.worker_word_index(slot, ss.W_STOP), ss.H_SHUTDOWN)
        seg.set_worker_word(slot, ss.W_PID, self.pid)
        seg.set_worker_word(slot, ss.W_WORKER_ID, self.worker_id)
        seg.set_worker_word(slot, ss.W_STARTED_NS, time.time_ns())
        seg.set_worker_word(slot, ss.W_HEARTBEAT_NS, time.time_ns())
        seg.set_worker_word(slot, ss.W_STATE, ss.IDLE)
        serve, monotonic_ns = w.serve, time.monotonic_ns
        stop_event, q, channels, open_channels = self.stop_event, seg.q, self.channels, self.channels.open
        stop_word = seg.worker_word_index(slot, ss.W_STOP)
        next_stats = 0
        try:
            while not (stop_event.is_set() or q[stop_word] == 1 or q[ss.H_SHUTDOWN] == 1):
                now = monotonic_ns()
                if now >= next_stats:
                    seg.write_stats(slot, dispatcher.export_stats())
                    next_stats = now + STATS_EVERY_NS
                got = serve(open_channels, IDLE_WAIT_S, BATCH_S)
                if got is True:
                    continue
                if got is None:
                    channels.prune()
                    continue
                if got.__class__ is list:  # served in C, but the reply needs an overflow segment
                    (_, cseg, ch), parts = got
                    self._overflow(w, cseg, ch, parts)
                elif len(got) == 2:  # claimed in C, served here (another encoder, an unusual payload)
                    (_, cseg, ch), n = got
                    self._handle_claimed(w, cseg, ch, n)
                else:
                    try:
                        self._serve_compiled(w, got)
                    except BadChannel as exc:
                        self.report(f"call slot {got[0]} of {seg.service!r}: {exc}")
                if len(open_channels) > 4:  # each mapping holds a descriptor (mmap dups it)
                    channels.prune_oldest()
        finally:
            if os.environ.get("SPEEDYSVC_DEBUG_SPIN"):
                log.warning("worker spin state at exit: %s", w.spin_state())
            seg.write_stats(slot, dispatcher.export_stats())
            seg.set_worker_word(slot, ss.W_STATE, ss.EXITED)
            self.channels.close()

    # `w` is the compiled _fastpath.Worker and `ch` a _fastpath.Channel (no stubs: Any)
    def _reply(self, w: Any, seg: Segment, ch: Any, parts: Parts) -> None:
        dispatcher = self.dispatcher
        try:
            if w.reply(ch, parts, dispatcher.calls, dispatcher.errors) < 0:
                self._overflow(w, seg, ch, parts)
        except Exception as exc:  # a result part that is no contiguous buffer: say so, do not die
            parts = dispatcher.error_reply(exc)
            if w.reply(ch, parts, dispatcher.calls, dispatcher.errors) < 0:
                self._overflow(w, seg, ch, parts)

    def _overflow(self, w: Any, seg: Segment, ch: Any, parts: Parts) -> None:
        """A reply too big for the channel: a one-off overflow segment the client maps."""
        dispatcher = self.dispatcher
        size = parts_size(parts)
        seq = w.claimed_seq(ch)
        pid, no = _channel_ids(seg.name)
        ok = write_overflow(self.channels.scope, pid, no, seq, parts, size)
        w.finish(ch, seq if ok else 0, size, dispatcher.calls, dispatcher.errors)

    def _serve_compiled(self, w: Any, entry: tuple[int, int, int]) -> None:
        slot, owner, gen = entry
        pid, no = owner >> 32, owner & 0xFFFFFFFF
        if not pid:
            return  # a bit left behind by a channel that closed meanwhile
        channels = self.channels
        cached = channels.open.get(owner)
        if cached is not None and cached[0] == gen:
            _, seg, ch = cached
        else:
            found = channels.get(pid, no, gen)
            if found is None:
                return  # the client went away
            seg, ch = found
        n = w.claim(ch)
        if n < 0:
            if n == -2:
                raise BadChannel(f"request length {seg.q[C_REQ_LEN]} exceeds channel {pid}/{no} "
                                 f"of {seg.size} bytes")
            return  # abandoned, a stale bit, or another worker's
        self._handle_claimed(w, seg, ch, n)

    def _handle_claimed(self, w: Any, seg: Segment, ch: Any, n: int) -> None:
        """Serve in Python a call claimed in C (request length n), and reply."""
        dispatcher = self.dispatcher
        request = seg.buf[DATA_OFFSET:DATA_OFFSET + n]
        try:
            parts = dispatcher.handle(request)
        except BaseException:
            w.finish(ch, 0, 0, dispatcher.calls, dispatcher.errors)
            raise
        finally:
            request.release()
        self._reply(w, seg, ch, parts)

    def report(self, message: str) -> None:
        """Something in shared memory was garbage: log it (rate-limited), never die of it."""
        self.garbage += 1
        now = time.monotonic()
        if self.garbage <= REPORT_FIRST or now >= self._next_report:
            self._next_report = now + REPORT_EVERY_S
            log.warning("%s (ignored; %d such entries so far)", message, self.garbage)

    def _wait_for_call(self) -> bool:
        sem = self.seg.queue_sem
        # Only one idle worker spins at a time: on a small machine extra spinners would take
        # the cores the clients need. The claim is racy by design; the worst case is two
        # spinners or none for one round.
        # The spin adapts to the recent gaps between calls (see channel.SpinState).
        seg = self.seg
        q = seg.q
        started = time.perf_counter_ns()
        budget = self.spin.budget()
        if budget and q[ss.H_SPINNER] == 0:
            me = self.slot + 1
            q[ss.H_SPINNER] = me
            try:
                end = started + budget
                has_pending = seg.has_pending
                while time.perf_counter_ns() < end:
                    if has_pending():
                        try:
                            sem.acquire(0)
                            self.spin.result(budget, True, time.perf_counter_ns() - started)
                            return True
                        except posix_ipc.BusyError:
                            pass  # another worker took it
                self.spin.result(budget, False, 0)
            finally:
                if q[ss.H_SPINNER] == me:
                    q[ss.H_SPINNER] = 0
        try:
            sem.acquire(IDLE_WAIT_S)
            got = True
        except (posix_ipc.BusyError, posix_ipc.SignalError):
            got = False
        return got

    def _mark_busy(self, client_pid: int) -> int:
        q, b = self.seg.q, self.wbase
        start = time_ns()
        q[b + ss.W_BUSY_SINCE_NS] = start
        q[b + ss.W_CLIENT_PID] = client_pid
        q[b + ss.W_STATE] = ss.BUSY
        return start

    def _mark_idle(self, start: int) -> None:
        q, b = self.seg.q, self.wbase
        end = time_ns()
        q[b + ss.W_STATE] = ss.IDLE
        q[b + ss.W_BUSY_SINCE_NS] = 0
        q[b + ss.W_BUSY_NS] += end - start
        q[b + ss.W_CALLS] = self.dispatcher.calls
        q[b + ss.W_ERRORS] = self.dispatcher.errors
        q[b + ss.W_HEARTBEAT_NS] = end

    def _serve(self, entry: tuple[int, int, int]) -> None:
        try:
            self._serve_one(entry)
        except BadChannel as exc:
            self.report(f"call slot {entry[0]} of {self.seg.service!r}: {exc}")

    def _serve_one(self, entry: tuple[int, int, int]) -> None:
        """One call: claim the client's channel, run the method, write the reply, post.

        Deliberately flat: it runs for every call, and on this path each Python function
        call costs about as much as a semaphore operation. Everything read from shared memory
        is checked before use: a forged slot costs this call, never the worker.
        """
        slot, owner, gen = entry
        pid, no = owner >> 32, owner & 0xFFFFFFFF
        if not pid:
            return  # a bit left behind by a channel that closed meanwhile
        channels = self.channels
        cached = channels.open.get(owner)
        if cached is not None and cached[0] == gen:
            _, seg, sem = cached
        else:
            found = channels.get(pid, no, gen)
            if found is None:
                return  # the client went away
            seg, sem = found
        cq = seg.q
        if cq[C_STATE] != REQUEST:
            return  # abandoned by a client that timed out, or a stale bit
        req_len = cq[C_REQ_LEN]
        if req_len > seg.size - DATA_OFFSET:
            cq[C_STATE] = ABANDONED
            raise BadChannel(f"request length {req_len} exceeds channel {pid}/{no} of {seg.size} bytes")
        start = self._mark_busy(pid)
        try:
            cq[C_WORKER_PID] = self.pid
            cq[C_STATE] = CLAIMED
            seq = cq[C_SEQ]
            buf = seg.buf
            request = buf[DATA_OFFSET:DATA_OFFSET + req_len]
            try:
                parts = self.dispatcher.handle(request)
            finally:
                request.release()
            if seg.closed or cq[C_STATE] != CLAIMED or cq[C_SEQ] != seq:
                return  # the client gave up meanwhile; nobody wants this reply
            if len(parts) == 2 and parts[1].__class__ is bytes:
                size = 8 + len(parts[1])
            else:
                size = parts_size(parts)
            offset = (DATA_OFFSET + req_len + 63) & ~63
            if offset + size <= seg.size:
                write_parts(buf, offset, parts)
                cq[C_OVERFLOW] = 0
                cq[C_RESP_OFFSET] = offset
            elif not write_overflow(channels.scope, pid, no, seq, parts, size):
                return
            else:
                cq[C_OVERFLOW] = seq
            cq[C_RESP_LEN] = size
            cq[C_STATE] = REPLY
            sem.release()
            channels.prune_oldest()
        finally:
            self._mark_idle(start)
