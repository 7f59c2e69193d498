"""Throughput with parallel callers: 2 client processes against 2 speedysvc workers (shared
memory), beside a Unix-socket server with 2 processes serving 2 client processes.

Each client process calls a 64-byte echo in a tight loop for the same wall-clock window,
started together; the figure is the sum of completed calls per second.

    python -m benchmarks.throughput_bench [--seconds 3]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import struct
import sys
import tempfile
import time
from typing import Any

CLIENTS = 2
PAYLOAD = b"x" * 64
_LEN = struct.Struct("!Q")


def _count_calls(call: Any, start_at: float, seconds: float) -> int:
    while time.time() < start_at:
        pass
    end = start_at + seconds
    n = 0
    while True:
        for _ in range(64):
            call(PAYLOAD)
        n += 64
        if time.time() >= end:
            return n


def _ssvc_client(address: str, method: str, start_at: float, seconds: float, out: Any) -> None:
    from speedysvc import connect
    from benchmarks.bench_services import EchoService
    with connect(EchoService, address) as c:
        fn = getattr(c, method)
        fn(PAYLOAD)
        out.put(_count_calls(fn, start_at, seconds))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _unix_server(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                while True:
                    (n,) = _LEN.unpack(_recv_exact(conn, 8))
                    conn.sendall(_LEN.pack(n) + _recv_exact(conn, n))
            except (EOFError, ConnectionError):
                pass


def _unix_client(path: str, start_at: float, seconds: float, out: Any) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)

    def call(payload: bytes) -> bytes:
        sock.sendall(_LEN.pack(len(payload)) + payload)
        (n,) = _LEN.unpack(_recv_exact(sock, 8))
        return _recv_exact(sock, n)
    call(PAYLOAD)
    out.put(_count_calls(call, start_at, seconds))
    sock.close()


def _run_clients(target: Any, args: tuple, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3.0   # every client connected and warm by then
    procs = [ctx.Process(target=target, args=(*args, start_at, seconds, out)) for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    try:
        total = sum(out.get(timeout=60 + seconds) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return total / seconds


def speedysvc_rates(seconds: float) -> dict[str, float]:
    from speedysvc import serve
    from benchmarks.bench_services import EchoService
    rates = {}
    with serve(EchoService, workers=2, scope=f"benchtp{os.getpid()}") as svc:
        for method in ("echo_raw", "echo_msgpack"):
            rates[f"speedysvc shm {method[5:]}"] = _run_clients(_ssvc_client, (svc.shm_address, method), seconds)
    return rates


def unix_rate(seconds: float) -> float:
    ctx = mp.get_context("fork")   # the server processes inherit the listening socket
    with tempfile.TemporaryDirectory(prefix="ssvcbench_tp_") as tmp:
        path = os.path.join(tmp, "echo.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        servers = [ctx.Process(target=_unix_server, args=(listener,), daemon=True) for _ in range(2)]
        for p in servers:
            p.start()
        try:
            return _run_clients(_unix_client, (path,), seconds)
        finally:
            for p in servers:
                p.kill()
                p.join(5)
            listener.close()


def measure(seconds: float = 3.0) -> dict[str, float]:
    """calls/s of 2 client processes: speedysvc shm (2 workers) and a 2-process Unix socket server."""
    rates = speedysvc_rates(seconds)
    rates["unix socket, 2 server processes"] = unix_rate(seconds)
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    for name, rate in measure(args.seconds).items():
        print(f"{name:<34} {rate:>12,.0f} calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
