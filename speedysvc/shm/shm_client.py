"""SHMClient: calls a service on this machine through shared memory."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Optional, Sequence

from .. import dispatch, serialisers
from ..scope_resolution import resolve_scope
from ..errors import MethodNotFound, ServiceUnavailable
from ..provider import ProviderMethods
from ..subscription import Subscription
from .channel import ClientChannel
from .events import ShmSubscription
from .service_segment import ServiceSegment

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_UNAVAILABLE_AFTER = 3.0


def _service_name(service: Any) -> str:
    if isinstance(service, str):
        return service
    return service.service_name()


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
        self._local = threading.local()
        self._channels: list[ClientChannel] = []
        self.segment = self._open_segment(connect_timeout)
        self.description = self.segment.description()
        self.methods = {name: info["encoder"] for name, info in self.description["methods"].items()}
        self._prepared: dict[str, tuple] = {}
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

    def _channel(self) -> ClientChannel:
        if os.getpid() != self._pid:
            self._after_fork()
        ch = getattr(self._local, "channel", None)
        if ch is None or ch.closed:
            ch = ClientChannel(self.scope)
            self._local.channel = ch
            with self._lock:
                self._channels = [c for c in self._channels if not c.closed]
                self._channels.append(ch)
        return ch

    def _after_fork(self) -> None:
        # the parent's channels belong to the parent; just forget them here
        self._pid = os.getpid()
        self._local = threading.local()
        self._channels = []
        self._lock = threading.Lock()

    def _current_segment(self) -> ServiceSegment:
        seg = self.segment
        if seg.shutting_down():
            # the service was stopped (and maybe started again): follow it to its new segment
            seg = self._open_segment(self.connect_timeout)
            old, self.segment = self.segment, seg
            old.close()
        return seg

    def call(self, method: str, args: Sequence = (), kwargs: Optional[dict] = None,
             timeout: Optional[float] = None) -> Any:
        if self.closed:
            raise ServiceUnavailable(f"client of {self.service_name!r} is closed")
        prepared = self._prepared.get(method)
        if prepared is None:
            prepared = self._prepare(method)
        serialiser, prefix = prepared
        parts = [prefix, *serialiser.encode_call(args, kwargs or {})]
        size = serialisers.parts_size(parts)
        return self._channel().call(self._current_segment(), parts, size,
                                    lambda view: dispatch.decode_reply(view, serialiser),
                                    self.timeout if timeout is None else timeout, self.unavailable_after)

    def _prepare(self, method: str) -> tuple:
        encoder = self.methods.get(method)
        if encoder is None and method not in (dispatch.DESCRIBE, dispatch.PING):
            raise MethodNotFound(f"service {self.service_name!r} has no method {method!r}; "
                                 f"it has: {', '.join(sorted(self.methods)) or 'none'}")
        serialiser = serialisers.SERIALISERS[encoder or "msgpack"]
        prefix = b"".join(dispatch.encode_request(method, serialiser.code, []))
        self._prepared[method] = (serialiser, prefix)
        return serialiser, prefix

    def call_raw(self, request: memoryview, timeout: Optional[float] = None) -> bytes:
        """Forward an already-encoded request; returns the encoded reply (used by the TCP gateway)."""
        return self._channel().call(self._current_segment(), [request], len(request), bytes,
                                    self.timeout if timeout is None else timeout, self.unavailable_after)

    def describe(self) -> dict:
        return self.description

    def subscribe(self, topics: Optional[Sequence[str]] = None):
        return Subscription(ShmSubscription(self.scope, self.service_name), topics)

    def release_thread_channel(self) -> None:
        """Close the calling thread's channel (threads that end should call this)."""
        ch = getattr(self._local, "channel", None)
        if ch is not None:
            ch.close()
            self._local.channel = None

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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
