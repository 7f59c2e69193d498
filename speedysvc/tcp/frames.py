"""The TCP wire format: versioned, length-prefixed frames with optional compression.

Header (18 bytes, little-endian): magic b"SV", version u8, kind u8, codec u8, flags u8,
request id u32, body length u64. The body of CALL and REPLY frames is the dispatch request
and reply format, compressed with `codec` when it is not 0.

Connection: server sends HELLO {version, service, auth, nonce, codecs, max_frame}; when a
secret is configured the client answers AUTH with HMAC-SHA256(secret, "speedysvc-auth-v1" +
nonce) and the server replies AUTH_OK, or ERROR and closes. Then CALL/REPLY, SUBSCRIBE/EVENT.
GOAWAY from the server: it is retiring; finish the call in progress, then reconnect.
"""
from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import struct
import time
import zlib
from typing import TYPE_CHECKING, Optional

from ..errors import PayloadTooLarge, ProtocolError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

MAGIC = b"SV"
VERSION = 1
HEADER = struct.Struct("<2sBBBBIQ")
HEADER_SIZE = HEADER.size

HELLO, AUTH, AUTH_OK, CALL, REPLY, ERROR, SUBSCRIBE, EVENT, PING, PONG, GOAWAY = range(1, 12)
KIND_NAMES = {HELLO: "HELLO", AUTH: "AUTH", AUTH_OK: "AUTH_OK", CALL: "CALL", REPLY: "REPLY",
              ERROR: "ERROR", SUBSCRIBE: "SUBSCRIBE", EVENT: "EVENT", PING: "PING", PONG: "PONG",
              GOAWAY: "GOAWAY"}

DEFAULT_MAX_FRAME = 64 << 20       # what a server accepts unless configured (tcp_max_frame_bytes)
CLIENT_MAX_FRAME = 1 << 30         # what a client accepts from the server it chose to call
COMPRESS_MIN_BYTES = 1024          # smaller bodies are never worth compressing
AUTH_CONTEXT = b"speedysvc-auth-v1"

CODEC_NONE, CODEC_ZLIB, CODEC_LZ4, CODEC_ZSTD = 0, 1, 2, 3
CODEC_BY_NAME = {"none": CODEC_NONE, "zlib": CODEC_ZLIB, "lz4": CODEC_LZ4, "zstd": CODEC_ZSTD}


def available_codecs() -> list[str]:
    names = ["none", "zlib"]
    try:
        import lz4.frame  # noqa: F401
        names.append("lz4")
    except ImportError:
        pass
    try:
        import zstandard  # noqa: F401
        names.append("zstd")
    except ImportError:
        pass
    return names


def compress(codec: int, data: bytes) -> bytes:
    if codec == CODEC_ZLIB:
        return zlib.compress(data, 1)
    if codec == CODEC_LZ4:
        import lz4.frame
        compressed: bytes = lz4.frame.compress(data)
        return compressed
    if codec == CODEC_ZSTD:
        import zstandard
        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


def decompress(codec: int, data: bytes, max_size: int) -> bytes:
    """Decompress, refusing output larger than max_size (no decompression bombs)."""
    try:
        if codec == CODEC_NONE:
            return data
        if codec == CODEC_ZLIB:
            d = zlib.decompressobj()
            out = d.decompress(data, max_size + 1)
            if d.unconsumed_tail or len(out) > max_size:
                raise PayloadTooLarge(f"decompressed frame exceeds {max_size} bytes")
            return out
        if codec == CODEC_LZ4:
            import lz4.frame
            d = lz4.frame.LZ4FrameDecompressor()
            lz4_out: bytes = d.decompress(data, max_length=max_size + 1)
            if len(lz4_out) > max_size or not d.eof:
                raise PayloadTooLarge(f"decompressed frame exceeds {max_size} bytes or is truncated")
            return lz4_out
        if codec == CODEC_ZSTD:
            import zstandard
            # a frame may declare any content size: read at most max_size + 1 bytes of output
            # instead of letting the library allocate what the frame claims
            with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
                chunks, total = [], 0
                while total <= max_size:
                    chunk = reader.read(min(max_size + 1 - total, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
            if total > max_size:
                raise PayloadTooLarge(f"decompressed frame exceeds {max_size} bytes")
            return b"".join(chunks)
    except (zlib.error, RuntimeError, ValueError, ImportError) as exc:
        raise ProtocolError(f"undecodable compressed frame (codec {codec}): {exc}") from None
    except Exception as exc:  # zstandard.ZstdError and lz4 errors have no common base
        if isinstance(exc, (PayloadTooLarge, ProtocolError)):
            raise
        raise ProtocolError(f"undecodable compressed frame (codec {codec}): {exc}") from None
    raise ProtocolError(f"unknown compression codec {codec}")


def pack_header(kind: int, request_id: int, length: int, codec: int = 0, flags: int = 0) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, codec, flags, request_id & 0xFFFFFFFF, length)


def parse_header(data: bytes, max_frame: int) -> tuple[int, int, int, int, int]:
    """-> (kind, codec, flags, request id, body length); ProtocolError on anything malformed."""
    if len(data) != HEADER_SIZE:
        raise ProtocolError(f"truncated frame header ({len(data)} of {HEADER_SIZE} bytes)")
    magic, version, kind, codec, flags, request_id, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}: not a speedysvc peer")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version} (this side speaks {VERSION})")
    if kind not in KIND_NAMES:
        raise ProtocolError(f"unknown frame kind {kind}")
    if codec not in (CODEC_NONE, CODEC_ZLIB, CODEC_LZ4, CODEC_ZSTD):
        raise ProtocolError(f"unknown compression codec {codec}")
    if length > max_frame:
        raise PayloadTooLarge(f"frame of {length} bytes exceeds the maximum of {max_frame}")
    return kind, codec, flags, request_id, length


def set_io_timeout(sock: socket.socket, seconds: Optional[float]) -> None:
    """Timeouts enforced by the kernel (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket.

    Python's own socket timeouts poll() before every recv and send: one more system call per
    frame. A timed-out call raises socket.timeout either way (see FrameReader, sendall_parts).
    """
    sock.settimeout(None)
    whole, usec = 0, 0  # 0, 0 = wait for ever
    if seconds is not None and seconds > 0:
        whole = int(seconds)
        usec = max(int((seconds - whole) * 1_000_000), 0 if whole else 1)
    value = struct.pack("ll", whole, usec)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class FrameReader:
    """Reads frames from a socket with as few recv calls as possible: usually one per frame
    (header and a small body arrive together).

    Memory follows the bytes actually received, never the length a header claims: the
    buffer starts small and grows to fit the frames that arrive, and a large body is
    received into a buffer that grows as its bytes come in (a peer announcing 1 GiB and
    sending nothing costs nothing).

    `frame_timeout` (servers: tcp_header_timeout) bounds a frame once its first byte has
    arrived: the header must be complete within it, and a body must make progress at least
    that often, so a peer dribbling bytes (slowloris) cannot hold a connection. Between
    frames the socket's own timeout applies (see `set_wait_timeout`).
    """

    INITIAL = 4 * 1024
    BUFFERED_MAX = 64 * 1024   # bodies up to this size are read through the shared buffer

    def __init__(self, sock: socket.socket, max_frame: int, frame_timeout: Optional[float] = None):
        self.sock = sock
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self.wait_timeout: Optional[float] = None  # SO_RCVTIMEO between frames, when managed here
        self.buf = bytearray(self.INITIAL)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self._mid_frame = False    # SO_RCVTIMEO is frame_timeout until the frame is complete

    @property
    def in_frame(self) -> bool:
        """Part of a frame has arrived and the rest has not (after a timeout: a stalled peer)."""
        return self._mid_frame or self.end > self.start

    def set_wait_timeout(self, seconds: Optional[float]) -> None:
        """How long to wait for the first byte of the next frame (the idle timeout)."""
        if seconds != self.wait_timeout or self._mid_frame:
            set_io_timeout(self.sock, seconds)
        self.wait_timeout = seconds
        self._mid_frame = False

    def _enter_frame(self) -> None:
        """Bytes of a frame are missing: from now on they must come within frame_timeout."""
        if self.frame_timeout is not None and not self._mid_frame:
            set_io_timeout(self.sock, self.frame_timeout)
            self._mid_frame = True

    def _leave_frame(self) -> None:
        if self._mid_frame:
            set_io_timeout(self.sock, self.wait_timeout)
            self._mid_frame = False

    def _reserve(self, need: int) -> None:
        """Room for `need` bytes from self.start, compacting or growing the buffer."""
        if self.start + need <= len(self.buf):
            return
        n = self.end - self.start
        if need > len(self.buf):
            size = len(self.buf)
            while size < need:
                size *= 2
            grown = bytearray(size)
            grown[:n] = self.view[self.start:self.end]
            self.view.release()
            self.buf, self.view = grown, memoryview(grown)
        else:
            self.buf[:n] = self.buf[self.start:self.end]
        self.start, self.end = 0, n

    def _fill(self, need: int, deadline: Optional[float] = None) -> None:
        """Make at least `need` bytes available at self.start (need <= BUFFERED_MAX)."""
        self._reserve(need)
        while self.end - self.start < need:
            if self.end > self.start or deadline is None:
                self._enter_frame()  # (a body is always mid-frame)
            k = self._recv_into(self.view[self.end:])
            if k == 0:
                raise ConnectionError(f"connection closed after {self.end - self.start} of {need} bytes")
            self.end += k
            if deadline is not None and self.end - self.start < need and time.monotonic() > deadline:
                raise socket.timeout(f"frame header not complete within {self.frame_timeout:g}s")

    def _recv_into(self, view: memoryview) -> int:
        try:
            return self.sock.recv_into(view)
        except (BlockingIOError, ssl.SSLWantReadError):  # SO_RCVTIMEO expired
            raise socket.timeout("timed out") from None

    def read_frame(self) -> tuple[int, int, int, int, bytearray]:
        """-> (kind, codec, flags, request id, decompressed body)."""
        if self.end - self.start < HEADER_SIZE:
            deadline = None if self.frame_timeout is None else time.monotonic() + self.frame_timeout
            if self.end > self.start:
                self._fill(HEADER_SIZE, deadline)
            else:  # wait for the first byte as long as the idle timeout says, then the deadline
                self._reserve(HEADER_SIZE)
                k = self._recv_into(self.view[self.end:])
                if k == 0:
                    raise ConnectionError("connection closed")
                self.end += k
                if self.frame_timeout is not None:  # (then deadline is not None either)
                    deadline = time.monotonic() + self.frame_timeout
                self._fill(HEADER_SIZE, deadline)
        kind, codec, flags, request_id, length = parse_header(
            bytes(self.view[self.start:self.start + HEADER_SIZE]), self.max_frame)
        self.start += HEADER_SIZE
        if length <= self.BUFFERED_MAX:
            if self.end - self.start < length:
                self._fill(length)
            body = bytearray(self.view[self.start:self.start + length])
            self.start += length
        else:
            body = self._read_large(length)
        self._leave_frame()
        if codec:
            body = bytearray(decompress(codec, bytes(body), self.max_frame))
        return kind, codec, flags, request_id, body

    def _read_large(self, length: int) -> bytearray:
        have = self.end - self.start
        body = bytearray(self.view[self.start:self.end])
        self.start = self.end = 0
        self._enter_frame()
        while have < length:
            # grow with what arrives: never more than twice what has been received
            room = min(length, max(2 * have, have + self.BUFFERED_MAX))
            body.extend(bytes(room - len(body)))
            view = memoryview(body)
            try:
                while have < room:
                    k = self._recv_into(view[have:room])
                    if k == 0:
                        raise ConnectionError(f"connection closed after {have} of {length} bytes")
                    have += k
            finally:
                view.release()
        return body


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        got += k
    return buf


def read_frame(sock: socket.socket, max_frame: int) -> tuple[int, int, int, int, bytearray]:
    """Unbuffered: exactly one frame is taken from the socket. -> (kind, codec, flags, id, body)."""
    kind, codec, flags, request_id, length = parse_header(bytes(recv_exact(sock, HEADER_SIZE)), max_frame)
    body = recv_exact(sock, length) if length else bytearray()
    if codec:
        body = bytearray(decompress(codec, bytes(body), max_frame))
    return kind, codec, flags, request_id, body


SMALL_FRAME = 16 * 1024  # below this, one joined buffer and send() beat a gather-write


def send_frame(sock: socket.socket, kind: int, request_id: int, parts: list[Buffer], codec: int = 0,
               flags: int = 0) -> None:
    size = 0
    for p in parts:
        size += len(p) if p.__class__ is bytes else memoryview(p).nbytes
    if codec and size >= COMPRESS_MIN_BYTES:
        body = compress(codec, b"".join(bytes(p) if not isinstance(p, bytes) else p for p in parts))
        parts, size = [body], len(body)
    else:
        codec = 0
    header = HEADER.pack(MAGIC, VERSION, kind, codec, flags, request_id & 0xFFFFFFFF, size)
    if size < SMALL_FRAME:
        try:
            sock.sendall(b"".join([header, *parts]))
        except (BlockingIOError, ssl.SSLWantWriteError):  # SO_SNDTIMEO expired
            raise socket.timeout("timed out") from None
        return
    sendall_parts(sock, [header, *parts])


def sendall_parts(sock: socket.socket, parts: list[Buffer]) -> None:
    """Gather-write without concatenating (large arrays are not copied again)."""
    if isinstance(sock, ssl.SSLSocket):  # TLS has no sendmsg: one record stream anyway
        try:
            sock.sendall(b"".join(memoryview(p).cast("B") for p in parts))
        except ssl.SSLWantWriteError:  # SO_SNDTIMEO expired
            raise socket.timeout("timed out") from None
        return
    views = [memoryview(p).cast("B") for p in parts if memoryview(p).nbytes]
    while views:
        try:
            sent = sock.sendmsg(views[:512])
        except BlockingIOError:  # SO_SNDTIMEO expired
            raise socket.timeout("timed out") from None
        while sent and views:
            n = views[0].nbytes
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def auth_digest(secret: str, nonce: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), AUTH_CONTEXT + nonce, hashlib.sha256).digest()


def check_auth(secret: str, nonce: bytes, digest: Buffer) -> bool:
    return hmac.compare_digest(auth_digest(secret, nonce), bytes(digest))


def codec_for(name: Optional[str]) -> int:
    if not name:
        return CODEC_NONE
    try:
        return CODEC_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown compression {name!r}; choose from {', '.join(CODEC_BY_NAME)}") from None
