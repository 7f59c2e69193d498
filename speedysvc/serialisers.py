"""The five per-method encoders.

An encoder turns the call's arguments into a list of buffers ("parts") and back. Returning parts
instead of one bytes object lets transports write large payloads (numpy arrays, raw bytes)
straight into shared memory or a socket without concatenating them first: a 100 MB array is
copied once on each side, not three times.

Call payload layout, for every encoder but raw: the encoding of ``[args, kwargs]``.
raw methods take exactly one bytes-like argument and return bytes.
"""
from __future__ import annotations

import json
import marshal
import pickle
import struct
from functools import partial
from typing import Any, Callable, Optional, Sequence

import msgpack

try:  # numpy is a core dependency, but keep the encoders importable without it
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]  # every use checks for None first

from .errors import EncodingError

Parts = list[Any]  # bytes-like objects written back to back

# numpy arrays at least this large travel out of band (after the msgpack body) so they are
# copied straight from the array into the transport buffer.
OUT_OF_BAND_MIN_BYTES = 16 * 1024
_EXT_NDARRAY_INLINE = 1
_EXT_NDARRAY_OOB = 2
_OOB_HEADER = struct.Struct("<II")  # body length, number of out-of-band buffers
_OOB_LEN = struct.Struct("<Q")
_ALIGN = 64


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


class Serialiser:
    """An encoder: `code` identifies it on the wire, `insecure` ones can run code on decode."""

    name: str = ""
    code: int = 0
    insecure: bool = False

    def encode_call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Parts:
        return self.encode([list(args), kwargs])

    def decode_call(self, buf: memoryview, copy: bool = True) -> tuple[list[Any], dict[str, Any]]:
        obj = self.decode(buf, copy)
        try:
            args, kwargs = obj
            return list(args), dict(kwargs)
        except (TypeError, ValueError):
            raise EncodingError(
                f"{self.name} call payload must be [args, kwargs], got {type(obj).__name__}") from None

    def encode_result(self, obj: Any) -> Parts:
        return self.encode(obj)

    def decode_result(self, buf: memoryview) -> Any:
        return self.decode(buf, True)

    def encode(self, obj: Any) -> Parts:
        raise NotImplementedError

    def decode(self, buf: memoryview, copy: bool = True) -> Any:
        raise NotImplementedError


class RawSerialiser(Serialiser):
    name, code = "raw", 1

    def encode_call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Parts:
        if kwargs or len(args) != 1:
            raise EncodingError("a raw method takes exactly one bytes argument and no keyword arguments")
        return self.encode(args[0])

    def decode_call(self, buf: memoryview, copy: bool = True) -> tuple[list[Any], dict[str, Any]]:
        return [bytes(buf)], {}

    def encode(self, obj: Any) -> Parts:
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise EncodingError(f"a raw method sends and returns bytes, not {type(obj).__name__}")
        return [obj]

    def decode(self, buf: memoryview, copy: bool = True) -> Any:
        return bytes(buf)


# Made once: json.dumps() with options builds an encoder per call, and json.loads() of bytes
# first guesses their encoding (always UTF-8 here) -- together about 5 µs of a JSON round trip.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_JSON_DECODER = json.JSONDecoder()


class JSONSerialiser(Serialiser):
    name, code = "json", 2

    def encode(self, obj: Any) -> Parts:
        try:
            return [_JSON_ENCODER.encode(obj).encode("utf-8")]
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"cannot encode as JSON: {exc}") from None

    def decode(self, buf: memoryview, copy: bool = True) -> Any:
        try:
            return _JSON_DECODER.decode(str(buf, "utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included
            raise EncodingError(f"undecodable JSON payload: {exc}") from None


class MsgpackSerialiser(Serialiser):
    """msgpack, with numpy arrays (any non-object dtype, any shape) as extension types.

    Layout: [body length u32][n buffers u32][body][pad to 64][len u64][buffer][pad]...
    Small arrays are inlined in the body; large ones follow it, 64-byte aligned, so a reader
    can wrap them with np.frombuffer in place.
    """

    name, code = "msgpack", 3

    def encode_call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Parts:
        try:  # as encode([list(args), kwargs]), one call less on the hot path (a tuple packs as a list)
            body = PACK_PLAIN((args, kwargs))
        except (TypeError, ValueError, OverflowError):
            return self._encode_general([list(args), kwargs])
        return [_OOB_HEADER.pack(len(body), 0), body]

    def encode(self, obj: Any) -> Parts:
        # Most calls carry no array, set or numpy scalar: msgpack packs them as they are, and
        # anything it cannot pack (TypeError) or range errors take the general path below,
        # which gives the same result or the same error. Saves a closure and a `default`
        # round per call on the shared-memory hot path.
        try:
            body = PACK_PLAIN(obj)
        except (TypeError, ValueError, OverflowError):
            return self._encode_general(obj)
        return [_OOB_HEADER.pack(len(body), 0), body]

    def _encode_general(self, obj: Any) -> Parts:
        buffers: list[Any] = []

        def default(value: Any) -> Any:
            if np is not None and isinstance(value, np.ndarray):
                return _encode_ndarray(value, buffers)
            if np is not None and isinstance(value, np.generic):
                return value.item()
            if isinstance(value, (set, frozenset)):
                return list(value)
            raise TypeError(f"cannot encode {type(value).__name__} with msgpack")

        try:
            body = msgpack.packb(obj, default=default, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodingError(str(exc)) from None
        parts: Parts = [_OOB_HEADER.pack(len(body), len(buffers)), body]
        offset = _OOB_HEADER.size + len(body)
        for buf in buffers:
            pad = _align(offset) - offset
            if pad:
                parts.append(bytes(pad))
            parts.append(_OOB_LEN.pack(buf.nbytes))
            offset = _align(offset) + _OOB_LEN.size
            pad = _align(offset) - offset
            if pad:
                parts.append(bytes(pad))
            offset = _align(offset)
            parts.append(buf)
            offset += buf.nbytes
        return parts

    def decode(self, buf: memoryview, copy: bool = True) -> Any:
        buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        if len(buf) < _OOB_HEADER.size:
            raise EncodingError("undecodable msgpack payload: shorter than its header")
        body_len, n_buffers = _OOB_HEADER.unpack_from(buf, 0)
        offset = _OOB_HEADER.size + body_len
        if offset > len(buf):
            raise EncodingError("undecodable msgpack payload: truncated")
        if not n_buffers:  # the common case: no out-of-band arrays, no per-call closure
            try:
                return UNPACK_PLAIN(buf[_OOB_HEADER.size:offset])
            except (ValueError, TypeError, msgpack.UnpackException, IndexError) as exc:
                raise EncodingError(f"undecodable msgpack payload: {exc}") from None
        buffers: list[memoryview] = []
        for _ in range(n_buffers):
            offset = _align(offset)
            if offset + _OOB_LEN.size > len(buf):
                raise EncodingError("undecodable msgpack payload: buffer table truncated")
            (n,) = _OOB_LEN.unpack_from(buf, offset)
            offset = _align(offset + _OOB_LEN.size)
            if offset + n > len(buf):
                raise EncodingError("undecodable msgpack payload: buffer truncated")
            buffers.append(buf[offset:offset + n])
            offset += n

        def ext_hook(code: int, data: bytes) -> Any:
            return _decode_ndarray(code, data, buffers, copy)

        try:
            return msgpack.unpackb(buf[_OOB_HEADER.size:_OOB_HEADER.size + body_len], raw=False,
                                   strict_map_key=False, ext_hook=ext_hook)
        except (ValueError, TypeError, msgpack.UnpackException, IndexError) as exc:
            raise EncodingError(f"undecodable msgpack payload: {exc}") from None


def _encode_ndarray(arr: Any, buffers: list[Any]) -> Any:
    if arr.dtype.hasobject:
        raise TypeError("numpy arrays of dtype object cannot be sent with msgpack; use pickle")
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        arr = arr.copy(order="C")
    if arr.nbytes >= OUT_OF_BAND_MIN_BYTES:
        buffers.append(memoryview(arr).cast("B") if arr.ndim else memoryview(arr.tobytes()))
        meta = [arr.dtype.str, list(arr.shape), len(buffers) - 1]
        return msgpack.ExtType(_EXT_NDARRAY_OOB, msgpack.packb(meta))
    meta = [arr.dtype.str, list(arr.shape), arr.tobytes()]
    return msgpack.ExtType(_EXT_NDARRAY_INLINE, msgpack.packb(meta, use_bin_type=True))


def _inline_ext_hook(code: int, data: bytes) -> Any:
    """ext_hook of payloads without out-of-band buffers (inline arrays are always copied)."""
    if code == _EXT_NDARRAY_OOB:
        raise ValueError("an out-of-band array is referenced, but the payload has no buffers")
    return _decode_ndarray(code, data, (), True)


# msgpack's own packer and unpacker with this encoder's options, for payloads without
# out-of-band buffers: the one definition of those options (the compiled worker loop calls them
# directly, see speedysvc/shm/_fastpath.c).
_PLAIN_PACK_OPTIONS: dict[str, Any] = {"use_bin_type": True}
PACK_PLAIN: Callable[[Any], bytes] = partial(msgpack.packb, **_PLAIN_PACK_OPTIONS)
UNPACK_PLAIN: Callable[[Any], Any] = partial(msgpack.unpackb, raw=False, strict_map_key=False,
                                             ext_hook=_inline_ext_hook)


def plain_packer() -> Callable[[Any], bytes]:
    """PACK_PLAIN as a Packer of its own, for one user at a time: its buffer is reused, which
    saves making a Packer per call (about half of a small pack). The compiled paths use one per
    worker and one per remote method, guarded against re-entry."""
    pack: Callable[[Any], bytes] = msgpack.Packer(**_PLAIN_PACK_OPTIONS).pack
    return pack


def compiled_decoder(encoder: Optional[str]) -> Any:
    """What the compiled path decodes a usual reply of a method with by itself: `bytes` for a
    raw method, UNPACK_PLAIN for a msgpack one; None for other encoders (Python decodes)."""
    return {"raw": bytes, "msgpack": UNPACK_PLAIN}.get(encoder or "")


def _decode_ndarray(code: int, data: bytes, buffers: Any, copy: bool) -> Any:
    if code == _EXT_NDARRAY_INLINE:
        dtype, shape, raw = msgpack.unpackb(data, raw=False)
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
    if code == _EXT_NDARRAY_OOB:
        dtype, shape, index = msgpack.unpackb(data, raw=False)
        arr = np.frombuffer(buffers[index], dtype=np.dtype(dtype)).reshape(shape)
        return arr.copy() if copy else arr
    return msgpack.ExtType(code, data)


class PickleSerialiser(Serialiser):
    name, code, insecure = "pickle", 4, True

    def encode(self, obj: Any) -> Parts:
        try:
            return [pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)]
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise EncodingError(f"cannot pickle: {exc}") from None

    def decode(self, buf: memoryview, copy: bool = True) -> Any:
        try:
            return pickle.loads(buf)
        except Exception as exc:  # unpickling can raise nearly anything
            raise EncodingError(f"undecodable pickle payload: {exc!r}") from None


class MarshalSerialiser(Serialiser):
    name, code, insecure = "marshal", 5, True

    def encode(self, obj: Any) -> Parts:
        try:
            return [marshal.dumps(obj)]
        except ValueError as exc:
            raise EncodingError(f"cannot marshal: {exc}") from None

    def decode(self, buf: memoryview, copy: bool = True) -> Any:
        try:
            return marshal.loads(bytes(buf))
        except (ValueError, EOFError, TypeError) as exc:
            raise EncodingError(f"undecodable marshal payload: {exc}") from None


SERIALISERS: dict[str, Serialiser] = {s.name: s for s in (
    RawSerialiser(), JSONSerialiser(), MsgpackSerialiser(), PickleSerialiser(), MarshalSerialiser())}
BY_CODE: dict[int, Serialiser] = {s.code: s for s in SERIALISERS.values()}

# Replies and errors travel in msgpack whatever the method's encoder, except the result itself.
CONTROL = SERIALISERS["msgpack"]


def parts_size(parts: Parts) -> int:
    size = 0
    for p in parts:
        size += len(p) if p.__class__ is bytes else memoryview(p).nbytes
    return size


def join_parts(parts: Parts) -> bytes:
    return b"".join(parts)


def get(name_or_code: "str | int") -> Serialiser:
    table: dict[Any, Serialiser] = BY_CODE if isinstance(name_or_code, int) else SERIALISERS
    try:
        return table[name_or_code]
    except KeyError:
        raise EncodingError(f"unknown encoder {name_or_code!r}; known: {', '.join(SERIALISERS)}") from None


Encoder = Callable[[Any], Parts]
