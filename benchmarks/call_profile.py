"""Where the time of one speedysvc call goes: a per-layer profile of a 64-byte echo.

    python -m benchmarks.call_profile            # shared memory and TCP, about 1 minute
    python -m benchmarks.call_profile --runs 3   # every number the median of 3 runs

Each layer is timed on its own, in one run, on the same service (one worker): the full call
as user code writes it, then the same call with the client's layers peeled off one by one, and
the worker's Python-level work timed in this process. Differences between adjacent rows are
what a layer costs. Numbers are p50 of one `perf_counter_ns` pair per call (rpc_bench's method).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH")) if p)

import gc  # noqa: E402

from benchmarks import rpc_bench as rb  # noqa: E402

PAYLOAD = b"x" * 64


def p50_us(call: Callable[[], Any], n: int) -> float:
    clock = time.perf_counter_ns
    for _ in range(n // 10):
        call()
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            t = clock()
            call()
            samples.append(clock() - t)
    finally:
        gc.enable()
    samples.sort()
    return samples[len(samples) // 2] / 1000


def shm_rows(shm: Any, method: str, decoder: Any, n: int) -> dict[str, float]:
    """One method over shared memory: as user code calls it, through the generic provider
    path, and as one C call with the request already built (what is left: transport + worker)."""
    from speedysvc import serialisers
    from speedysvc.shm.channel import POLL_S

    kind = "raw" if method == "echo_raw" else "msgpack"
    prov = shm.provider
    rows = {
        f"shm {kind}: connect() attribute, as user code calls it": p50_us(lambda: getattr(shm, method)(PAYLOAD), n),
        f"shm {kind}: SHMClient.call (the generic provider path)": p50_us(lambda: prov.call(method, (PAYLOAD,)), n),
    }
    ch, seg = prov.thread_channel(), prov.segment
    prefix = prov._prepared[method][1]
    msgpack = serialisers.SERIALISERS["msgpack"]
    parts = [prefix, PAYLOAD] if kind == "raw" else [prefix, *msgpack.encode_call((PAYLOAD,), {})]
    fast, seg_fast, slot, limit = ch.fast, seg.fast, ch.slot, ch.request_limit
    seq = [1 << 40]

    def one_c_call() -> Any:
        seq[0] += 1
        return fast.call_decoded(seg_fast, slot, parts, seq[0], limit, POLL_S, decoder)
    rows[f"shm {kind}: one C call, request prebuilt (transport + worker)"] = p50_us(one_c_call, n)
    return rows


def measure(n: int) -> dict[str, float]:
    import speedysvc
    from benchmarks.bench_services import EchoService
    from speedysvc import dispatch, serialisers
    from speedysvc.tcp import frames

    rows: dict[str, float] = {}
    try:
        from benchmarks import c_pingpong
        rows["C limit: busy-spin ping-pong between two processes"] = c_pingpong.measure(100_000)["p50_ns"] / 1000
    except Exception as exc:  # no compiler: the row says so, the rest still runs
        print(f"C limit: not available ({exc})", file=sys.stderr)
    with rb.floor_peers() as peers:
        floor = peers[rb.FLOOR_ROW].call
        rows["floor: Python shm ping-pong"] = p50_us(lambda: floor(PAYLOAD), n)
    with rb._socket_client(socket.AF_INET, ("127.0.0.1", 0)) as tcp_echo:
        rows["raw TCP socket echo (Python both sides)"] = p50_us(lambda: tcp_echo(PAYLOAD), n)

    msgpack = serialisers.SERIALISERS["msgpack"]
    with speedysvc.serve(EchoService, workers=1, tcp="127.0.0.1:0", scope=f"prof{os.getpid()}") as svc:
        shm = speedysvc.connect(EchoService, svc.shm_address)
        tcp = speedysvc.connect(EchoService, svc.tcp_address)
        for method, decoder in (("echo_raw", bytes), ("echo_msgpack", serialisers.UNPACK_PLAIN)):
            rows.update(shm_rows(shm, method, decoder, n))
        # the worker's Python-level work for one msgpack echo, timed here
        body = serialisers.PACK_PLAIN(((PAYLOAD,), {}))
        pack = serialisers.plain_packer()
        echo = EchoService.echo_msgpack  # the decorators return the function itself
        instance = EchoService.__new__(EchoService)
        rows["worker msgpack: unpack args + call method + pack result (in-process)"] = \
            p50_us(lambda: pack(echo(instance, *serialisers.UNPACK_PLAIN(body)[0])), n)
        rows["worker raw: call method on bytes (in-process)"] = p50_us(lambda: echo(instance, PAYLOAD), n)
        # TCP: the client library, then a bare socket speaking the frame protocol to the front
        rows["tcp msgpack: connect() attribute"] = p50_us(lambda: tcp.echo_msgpack(PAYLOAD), n)
        host, port = svc.tcp_address[len("tcp://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            frames.read_frame(sock, 1 << 20)  # HELLO
            request = b"".join([*dispatch.encode_request("echo_msgpack", msgpack.code, []),
                                *msgpack.encode_call((PAYLOAD,), {})])
            frame = frames.HEADER.pack(frames.MAGIC, frames.VERSION, frames.CALL, 0, 0, 7, len(request)) + request
            buf = bytearray(4096)
            view = memoryview(buf)

            def bare() -> None:
                sock.sendall(frame)
                got = sock.recv_into(buf)
                while got < frames.HEADER_SIZE or got < frames.HEADER_SIZE + int.from_bytes(buf[10:18], "little"):
                    got += sock.recv_into(view[got:])
            rows["tcp msgpack: prebuilt frame on a bare socket (front + shm hop + worker)"] = p50_us(bare, n)
        shm.close()
        tcp.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("-n", type=int, default=20_000, help="calls per row")
    args = parser.parse_args()
    runs = [measure(args.n) for _ in range(args.runs)]
    print(f"{'layer':78s} {'p50 µs':>8s}")
    for key in runs[0]:
        print(f"{key:78s} {statistics.median(r[key] for r in runs):8.2f}")


if __name__ == "__main__":
    main()
