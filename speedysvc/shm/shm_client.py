"""SHMClient: calls a service on this machine through shared memory."""
from __future__ import annotations

import os
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:
    from typing_extensions import Self

from .. import dispatch, serialisers
from ..scope_resolution import resolve_scope
from ..errors import MethodNotFound, ServiceUnavailable
from ..provider import ProviderMethods
from ..serialisers import Parts, Serialiser
from ..subscription import Subscription
from . import native
from .channel import ClientChannel, Decode, SegmentReplaced
from .events import ShmSubscription
from .service_segment import H_SHUTDOWN, ServiceSegment

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_UNAVAILABLE_AFTER = 3.0

# Bumped in a forked child: clients compare it on every call instead of asking os.getpid()
# (a system call) -- after fork, the parent's channels belong to the parent.
_forks = [0]
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))

# a method's serialiser, its encoded request prefix, the reply decoder, and what the compiled
# path decodes a usual reply with by itself (None: decode does it; see ClientChannel.call)
Prepared = tuple[Serialiser, bytes, Decode, Any]


class _ThreadChannel:
    """Lives in the thread-local state of one thread: when the thread ends, CPython drops it
    and the thread's channel is closed (segment and semaphore unlinked, call slot freed)
    without the caller doing anything."""

    __slots__ = ("channel",)

    def __init__(self, channel: ClientChannel):
        self.channel = channel

    def __del__(self) -> None:
        try:
            self.channel.request_close()
        except Exception:  # interpreter shutdown, or already gone
            pass


def _service_name(service: Any) -> str:
    if isinstance(service, str):
        return service
    name: str = service.service_name()
    return name


class SHMClient(ProviderMethods):
    """A connection to one service over shared memory. Safe to share between threads: each
    thread gets its own channel. After fork, the child makes its own channels."""

    transport = "shm"

    def __init__(self, service: Any, scope: Optional[str] = None, *, timeout: Optional[float] = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 unavailable_after: float = DEFAULT_UNAVAILABLE_AFTER):
        self.service_name = _service_name(service)
        self._scope_given = scope  # None: found again while waiting (the supervisor may start later)
        self.scope = resolve_scope(self.service_name, scope)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.unavailable_after = unavailable_after
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fork = _forks[0]
        self._local = threading.local()
        self._channels: list[ClientChannel] = []
        self.segment = self._open_segment(connect_timeout)
        self.description = self.segment.description()
        self.methods = {name: info["encoder"] for name, info in self.description["methods"].items()}
        self._prepared: dict[str, Prepared] = {}
        # connect()'s method attributes are compiled Callers (bound_method) when the segment is
        self._compiled = self.segment.fast is not None
        self.closed = False

    def _open_segment(self, wait: float) -> ServiceSegment:
        deadline = time.monotonic() + wait
        while True:
            try:
                return ServiceSegment.open(self.scope, self.service_name)
            except ServiceUnavailable:
                if self._scope_given is None:
                    self.scope = resolve_scope(self.service_name)
                    try:
                        return ServiceSegment.open(self.scope, self.service_name)
                    except ServiceUnavailable:
                        pass
                if time.monotonic() >= deadline:
                    raise ServiceUnavailable(
                        f"service {self.service_name!r} is not running in scope {self.scope!r} "
                        f"(waited {wait:g}s for it to start)") from None
                time.sleep(0.02)

    def thread_channel(self) -> ClientChannel:
        """The calling thread's channel, made (and registered for close()) on first use."""
        if _forks[0] != self._fork:
            self._after_fork()
        holder: Optional[_ThreadChannel] = getattr(self._local, "holder", None)
        if holder is None or holder.channel.closed:
            ch = ClientChannel(self.scope)
            self._local.holder = _ThreadChannel(ch)
            with self._lock:
                self._channels = [c for c in self._channels if not c.closed]
                self._channels.append(ch)
            return ch
        return holder.channel

    def _after_fork(self) -> None:
        # the parent's channels belong to the parent; just forget them here
        self._pid = os.getpid()
        self._fork = _forks[0]
        self._local = threading.local()
        self._channels = []
        self._lock = threading.Lock()

    def _current_segment(self) -> ServiceSegment:
        seg = self.segment
        if seg.shutting_down():
            # the service was stopped (and maybe started again): follow it to its new segment
            seg = self._follow(seg)
        return seg

    def _follow(self, old: ServiceSegment) -> ServiceSegment:
        with self._lock:
            if self.segment is old:
                self.segment = self._open_segment(self.connect_timeout)
                # other threads may still be inside a call on the old one: the GC unmaps it
            return self.segment

    def _send(self, parts: Parts, size: Optional[int], decode: Decode, timeout: Optional[float],
              decoder: Any = None) -> Any:
        if timeout is None:
            timeout = self.timeout
        if _forks[0] == self._fork:  # the steady state, flat: this thread's channel, if open
            holder: Optional[_ThreadChannel] = getattr(self._local, "holder", None)
            channel = holder.channel if holder is not None and not holder.channel.closed else self.thread_channel()
        else:
            channel = self.thread_channel()
        for _ in range(3):
            seg = self.segment
            if seg.q[H_SHUTDOWN]:  # stopped (and maybe started again): follow it
                seg = self._follow(seg)
            try:
                return channel.call(seg, parts, size, decode, timeout, self.unavailable_after, decoder)
            except SegmentReplaced:
                # the supervisor was killed and started again: the call was never taken by
                # any worker, so sending it to the new segment runs it exactly once
                if self._replaced(seg, channel):
                    channel = self.thread_channel()
        raise ServiceUnavailable(f"service {self.service_name!r} keeps being replaced")

    def call(self, method: str, args: Sequence[Any] = (), kwargs: Optional[dict[str, Any]] = None,
             timeout: Optional[float] = None) -> Any:
        if self.closed:
            raise ServiceUnavailable(f"client of {self.service_name!r} is closed")
        prepared = self._prepared.get(method)
        if prepared is None:
            prepared = self._prepare(method)
        serialiser, prefix, decode, decoder = prepared
        if decoder is bytes and not kwargs and len(args) == 1 and args[0].__class__ is bytes:
            parts = [prefix, args[0]]  # a raw call, as its encoder would write it
        else:
            parts = [prefix, *serialiser.encode_call(args, kwargs or {})]
        # the size is only computed when the pure-Python path or a growing channel needs it
        return self._send(parts, None, decode, timeout, decoder)

    def _prepare(self, method: str) -> Prepared:
        encoder = self.methods.get(method)
        if encoder is None and method not in (dispatch.DESCRIBE, dispatch.PING):
            raise MethodNotFound(f"service {self.service_name!r} has no method {method!r}; "
                                 f"it has: {', '.join(sorted(self.methods)) or 'none'}")
        serialiser = serialisers.SERIALISERS[encoder or "msgpack"]
        prefix = b"".join(dispatch.encode_request(method, serialiser.code, []))

        def decode(view: memoryview,
                   _decode_reply: Callable[[memoryview, Serialiser], Any] = dispatch.decode_reply,
                   _serialiser: Serialiser = serialiser) -> Any:
            return _decode_reply(view, _serialiser)
        decoder = serialisers.compiled_decoder(encoder)
        self._prepared[method] = prepared = (serialiser, prefix, decode, decoder)
        return prepared

    def bound_method(self, method: str, timeout: Optional[float] = None) -> Any:
        """`method` as a callable for connect()'s attributes: on the compiled path, for raw and
        msgpack methods, a _fastpath.Caller, which makes a steady-state call without a Python
        frame (and hands everything else to call(), or to _resume() once the call was sent);
        None otherwise (the caller uses a MethodProxy)."""
        if not self._compiled:
            return None
        serialiser, prefix, decode, decoder = self._prepared.get(method) or self._prepare(method)
        if decoder is None:
            return None
        raw = decoder is bytes
        pack = None if raw else serialisers.plain_packer()
        # each thread's Route lives in _local (after a fork the child's routes are found stale
        # by the Route itself, so a Caller made before the fork may keep this local)
        return native.caller(self._local, prefix, raw, pack, decoder, decode,
                             partial(self._call_and_arm, method, timeout),
                             partial(self._resume, method, timeout),
                             partial(self.bound_method, method),
                             f"<remote method {method} of {self.service_name!r}>")

    def _call_and_arm(self, method: str, timeout: Optional[float], args: tuple[Any, ...],
                      kwargs: Optional[dict[str, Any]], route: Any) -> Any:
        """A Caller's call that needs Python (the first, an unusual argument, a changed state):
        made by call(); then the thread's route is armed for its next calls."""
        try:
            return self.call(method, args, kwargs, timeout)
        finally:
            self.arm_route(route)

    def _resume(self, method: str, timeout: Optional[float], channel: ClientChannel, code: int, seq: int,
                args: tuple[Any, ...], kwargs: Optional[dict[str, Any]], route: Any) -> Any:
        """A Caller sent the call as `seq` and got `code` (see ClientChannel.resume): finish it
        as call() would."""
        service = channel.service
        assert service is not None  # the route was armed with the channel's service
        try:
            return channel.resume(code, seq, service, self._prepared[method][2],
                                  self.timeout if timeout is None else timeout, self.unavailable_after)
        except SegmentReplaced:  # as in _send
            self._replaced(service, channel)
            return self.call(method, args, kwargs, timeout)
        finally:
            self.arm_route(route)

    def arm_route(self, route: Any) -> bool:
        """Arm `route` with the calling thread's channel when it is in the steady state the
        compiled path handles by itself (Callers, the TCP front's relay), else disarm it (see
        _fastpath.c, Route). True when armed."""
        holder: Optional[_ThreadChannel] = getattr(self._local, "holder", None)
        channel = holder.channel if holder is not None else None
        seg = self.segment
        if (channel is not None and not self.closed and _forks[0] == self._fork and channel.fast is not None
                and channel.service is seg and seg.fast is not None and not channel.closing
                and channel.want_capacity <= channel.capacity):
            route.arm(channel.fast, channel, seg.fast, channel.slot, channel.request_limit)
            return True
        route.disarm()
        return False

    def resume_raw(self, code: int, seq: int, request: memoryview) -> bytes:
        """Finish a call the TCP front's relay sent as `seq` from this thread's channel (see
        ClientChannel.resume); the encoded reply. `request` is sent again on the new segment
        when the old one was replaced before any worker took the call."""
        channel = self.thread_channel()
        service = channel.service
        assert service is not None  # the route was armed with the channel's service
        try:
            reply: bytes = channel.resume(code, seq, service, bytes, self.timeout, self.unavailable_after)
        except SegmentReplaced:  # as in _send
            self._replaced(service, channel)
            return self.call_raw(request)
        return reply

    def _replaced(self, old: ServiceSegment, channel: ClientChannel) -> bool:
        """A call on `old` found it replaced (the supervisor was killed and started again)
        before any worker took it: follow the service to its new segment. True when the
        channel had to be closed (the new supervisor swept it with the old run's objects)."""
        self._follow(old)
        if channel.swept():
            channel.close()
            return True
        return False

    def call_raw(self, request: memoryview, timeout: Optional[float] = None) -> bytes:
        """Forward an already-encoded request; returns the encoded reply (used by the TCP gateway)."""
        reply: bytes = self._send([request], len(request), bytes, timeout)
        return reply

    def call_encoded(self, method: str, payload: Any, timeout: Optional[float] = None,
                     flags: int = 0) -> bytes:
        """Forward a call whose arguments are already encoded with the method's encoder
        (`payload`: bytes-like); returns the encoded reply (status byte, padding, body) --
        see dispatch.decode_reply. For fronts that relay calls (TCP) without decoding them;
        `flags` carries dispatch.FLAG_NETWORK for calls that came over the network."""
        if self.closed:
            raise ServiceUnavailable(f"client of {self.service_name!r} is closed")
        serialiser, prefix, _, _ = self._prepared.get(method) or self._prepare(method)
        if flags:
            prefix = b"".join(dispatch.encode_request(method, serialiser.code, [], flags))
        parts = [prefix, payload]
        reply: bytes = self._send(parts, serialisers.parts_size(parts), bytes, timeout)
        return reply

    def describe(self) -> dict[str, Any]:
        return self.description

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> Subscription:
        return Subscription(ShmSubscription(self.scope, self.service_name), topics)

    def release_thread_channel(self) -> None:
        """Close the calling thread's channel (threads that end should call this)."""
        holder: Optional[_ThreadChannel] = getattr(self._local, "holder", None)
        if holder is not None:
            holder.channel.close()
            self._local.holder = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        busy = False
        if os.getpid() == self._pid:
            with self._lock:
                for ch in self._channels:
                    busy = busy or ch.busy
                    ch.request_close()  # a channel mid-call is closed by its own thread
                self._channels.clear()
        if not busy:  # else calls in other threads still read it; the GC unmaps it after them
            self.segment.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
