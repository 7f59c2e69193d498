"""Server side of a call, shared by every transport: decode, invoke, encode the reply.

Request:  [encoder code u8][flags u8][name length u16][name utf-8][payload...]
Reply:    [status u8][7 bytes padding][payload...]   status OK -> the method's encoder,
          status ERROR -> msgpack dict of the exception (see remote_errors).
"""
from __future__ import annotations

import struct
from bisect import bisect_right
from time import monotonic_ns
from typing import Any, Optional

from . import errors, remote_errors, serialisers
from .methods import ServerMethodsBase
from .monitoring.latency_histogram import MIN_BUCKET
from .monitoring.latency_histogram import LOWER_NS

REQUEST_HEADER = struct.Struct("<BBH")
_unpack_request_header = REQUEST_HEADER.unpack_from
RAW_CODE = serialisers.SERIALISERS["raw"].code
MSGPACK_CODE = serialisers.SERIALISERS["msgpack"].code
REPLY_HEADER = struct.Struct("<B7x")
OK_HEADER = REPLY_HEADER.pack(0)
STATUS_OK = 0
STATUS_ERROR = 1
FLAG_NETWORK = 1  # set by the TCP gateway: pickle/marshal refused unless allowed

DESCRIBE = "__describe__"
PING = "__ping__"


def encode_request(method: str, encoder_code: int, payload_parts: list[Any], flags: int = 0) -> list[Any]:
    name = method.encode("utf-8")
    return [REQUEST_HEADER.pack(encoder_code, flags, len(name)), name, *payload_parts]


def parse_request(buf: memoryview, names: Optional[dict[bytes, str]] = None) -> tuple[int, int, str, memoryview]:
    """`names` caches method-name bytes -> str (the worker's hot path)."""
    if len(buf) < REQUEST_HEADER.size:
        raise errors.ProtocolError("request shorter than its header")
    code, flags, name_len = REQUEST_HEADER.unpack_from(buf, 0)
    end = REQUEST_HEADER.size + name_len
    if end > len(buf):
        raise errors.ProtocolError("request truncated inside the method name")
    raw = bytes(buf[REQUEST_HEADER.size:end])
    name = names.get(raw) if names is not None else None
    if name is None:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.ProtocolError("method name is not valid UTF-8") from None
    return code, flags, name, buf[end:]


def decode_reply(buf: memoryview, serialiser: serialisers.Serialiser) -> Any:
    """Client side: return the result or raise the remote exception."""
    if len(buf) < REPLY_HEADER.size:
        raise errors.ProtocolError("reply shorter than its header")
    status = buf[0]
    body = buf[REPLY_HEADER.size:]
    if status == STATUS_OK:
        return serialiser.decode_result(body)
    if status == STATUS_ERROR:
        raise remote_errors.dict_to_exception(serialisers.CONTROL.decode(body))
    raise errors.ProtocolError(f"unknown reply status {status}")


class Dispatcher:
    def __init__(self, instance: ServerMethodsBase, allow_insecure: Optional[bool] = None):
        self.instance = instance
        cls = type(instance)
        self.allow_insecure = cls.allow_insecure_serialisation if allow_insecure is None else allow_insecure
        self.specs = cls.methods()
        self.bound = {name: getattr(instance, name) for name in self.specs}
        self.description = cls.describe()
        self.names = {name.encode("utf-8"): name for name in self.specs}
        # per method: [calls, errors, latency histogram {bucket: count}]
        self.stats: dict[str, list[Any]] = {name: [0, 0, {}] for name in self.specs}
        # name bytes -> (encoder code, bound method, serialiser, refused over network?, stats,
        #                copy arrays?)
        self.fast = {name.encode("utf-8"): (spec.serialiser.code, self.bound[name], spec.serialiser,
                                            spec.serialiser.insecure and not self.allow_insecure,
                                            self.stats[name], not spec.zero_copy)
                     for name, spec in self.specs.items()}
        self.calls = 0
        self.errors = 0

    def handle(self, request: memoryview) -> list[Any]:
        """Run one request; always returns reply parts (errors become an ERROR reply)."""
        start = monotonic_ns()
        stats = None
        try:
            code, flags, name_len = _unpack_request_header(request, 0)
            end = 4 + name_len
            fast = self.fast.get(request[4:end].tobytes())
            if fast is not None and fast[0] == code and not (fast[3] and flags & FLAG_NETWORK):
                # hot path: a known method with the right encoder
                _, fn, serialiser, _, stats, copy = fast
                if code == RAW_CODE:
                    result = fn(request[end:].tobytes())
                    if result.__class__ is not bytes:
                        result = serialiser.encode(result)[0]  # type check and message
                    parts = [OK_HEADER, result]
                else:
                    args, kwargs = serialiser.decode_call(request[end:], copy)
                    parts = [OK_HEADER, *serialiser.encode_result(fn(*args, **kwargs))]
            else:
                code, flags, name, payload = parse_request(request, self.names)
                stats = self.stats.get(name)
                parts = self._invoke(code, flags, name, payload)
            self._count(stats, start, failed=False)
            return parts
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the caller
            return self._failed(exc, stats, start)

    def complete(self, fast: tuple[Any, ...], start: int, result: Any,
                 exc: Optional[BaseException]) -> list[Any]:
        """The end of a call the compiled worker loop started (shm/_fastpath.c serve()): the
        method raised `exc`, or returned a `result` its quick encoding could not take."""
        _, _, serialiser, _, stats, _ = fast
        try:
            if exc is not None:
                raise exc
            if fast[0] == RAW_CODE:
                parts = [OK_HEADER, serialiser.encode(result)[0]]  # type check and message
            else:
                parts = [OK_HEADER, *serialiser.encode_result(result)]
            self._count(stats, start, failed=False)
            return parts
        except BaseException as failure:  # noqa: BLE001 - every failure must reach the caller
            return self._failed(failure, stats, start)
        finally:
            del exc  # no reference cycle through the traceback

    def _failed(self, exc: BaseException, stats: Optional[list[Any]], start: int) -> list[Any]:
        """A call that failed: counted, and its ERROR reply (KeyboardInterrupt and SystemExit
        stop the worker instead)."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        self._count(stats, start, failed=True)
        return self.error_reply(exc)

    def _count(self, stats: Optional[list[Any]], start: int, failed: bool) -> None:
        self.calls += 1
        self.errors += failed
        if stats is not None:
            stats[0] += 1
            stats[1] += failed
            b = MIN_BUCKET + bisect_right(LOWER_NS, monotonic_ns() - start)
            buckets = stats[2]
            buckets[b] = buckets.get(b, 0) + 1

    def _invoke(self, code: int, flags: int, name: str, payload: memoryview) -> list[Any]:
        spec = self.specs.get(name)
        if spec is None:
            if name == DESCRIBE:
                return [REPLY_HEADER.pack(STATUS_OK), *serialisers.CONTROL.encode(self.description)]
            if name == PING:
                return [REPLY_HEADER.pack(STATUS_OK), *serialisers.CONTROL.encode("pong")]
            raise errors.MethodNotFound(
                f"service {self.description['name']!r} has no method {name!r}")
        serialiser = spec.serialiser
        if code != serialiser.code:
            found = serialisers.BY_CODE[code].name if code in serialisers.BY_CODE else f"unknown code {code}"
            raise errors.ProtocolError(
                f"method {name!r} uses the {spec.encoder} encoder, but the call was encoded with {found}")
        if serialiser.insecure and flags & FLAG_NETWORK and not self.allow_insecure:
            raise errors.InsecureSerialisationRefused(
                f"method {name!r} uses {spec.encoder}, which is refused over the network; set "
                f"force_insecure_serialisation=true for this service to allow it")
        args, kwargs = serialiser.decode_call(payload, copy=not spec.zero_copy)
        result = self.bound[name](*args, **kwargs)
        return [OK_HEADER, *serialiser.encode_result(result)]

    @staticmethod
    def error_reply(exc: BaseException) -> list[Any]:
        """The reply parts that raise `exc` in the caller (its type, message and traceback)."""
        try:
            body = serialisers.CONTROL.encode(remote_errors.exception_to_dict(exc))
        except Exception:  # an exception whose str() fails must still produce a reply
            body = serialisers.CONTROL.encode(remote_errors.error_dict(type(exc), repr(type(exc))))
        return [REPLY_HEADER.pack(STATUS_ERROR), *body]

    def export_stats(self) -> dict[str, Any]:
        return {name: st for name, st in self.stats.items() if st[0]}
