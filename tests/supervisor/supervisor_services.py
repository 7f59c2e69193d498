"""Service classes the supervisor tests run in real worker processes (importable by module path).

Workers inherit the supervisor's environment: SPEEDYSVC_TEST_DIR names a directory where
services leave marks the tests read (start order, for instance).
"""
from __future__ import annotations

import logging
import os
import sys
import time

from speedysvc import ServerMethodsBase, json_method, msgpack_method, pickle_method, raw_method

log = logging.getLogger("supervisor_services")
_hoard: list = []


def _mark(name: str) -> None:
    directory = os.environ.get("SPEEDYSVC_TEST_DIR")
    if directory:
        with open(os.path.join(directory, "marks.txt"), "a") as f:
            f.write(f"{name} {time.time():.6f} {os.getpid()}\n")


class Work(ServerMethodsBase):
    name = "work"
    port = 17001

    @msgpack_method
    def ping(self):
        return os.getpid()

    @msgpack_method
    def sleep(self, seconds: float):
        time.sleep(seconds)
        return os.getpid()

    @msgpack_method
    def spin(self, seconds: float):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return os.getpid()

    @msgpack_method
    def hang(self):
        while True:
            time.sleep(1)

    @msgpack_method
    def grow(self, mib: int):
        block = bytearray(mib * 2**20)
        for i in range(0, len(block), 4096):  # touch every page so it is resident
            block[i] = 1
        _hoard.append(block)
        return os.getpid()

    @msgpack_method
    def say(self, text: str):
        print(f"stdout says {text}", flush=True)
        log.warning("log record says %s", text)
        print(f"stderr says {text}", file=sys.stderr, flush=True)
        return os.getpid()

    @json_method
    def fail(self, message: str):
        raise ValueError(message)

    @pickle_method
    def echo_pickle(self, obj):
        return obj


class Other(ServerMethodsBase):
    """A second service, to show what a reload or a failure does not touch."""
    name = "other"
    port = 17002

    @msgpack_method
    def ping(self):
        return os.getpid()

    @msgpack_method
    def sleep(self, seconds: float):
        time.sleep(seconds)
        return os.getpid()


class First(ServerMethodsBase):
    """Takes a while to start; Second must not start before it is ready."""
    name = "first"
    port = 17003

    def on_start(self):
        _mark("first-begin")
        time.sleep(1.0)
        _mark("first-ready")

    @msgpack_method
    def ping(self):
        return os.getpid()


class Second(ServerMethodsBase):
    name = "second"
    port = 17004

    def on_start(self):
        _mark("second-begin")

    @msgpack_method
    def ping(self):
        return os.getpid()


class CrashOnStart(ServerMethodsBase):
    """Every worker dies while starting: a crash loop."""
    name = "crashy"
    port = 17005

    def on_start(self):
        _mark("crashy-start")
        raise RuntimeError("crashy cannot open its database")

    @msgpack_method
    def ping(self):
        return os.getpid()


class NotAService:
    """Named by a test .ini to provoke a configuration error."""


class Greeter(ServerMethodsBase):
    """Written the way the published speedysvc reference shows, for the client-forms tests."""
    name = "greeter"
    port = 17311

    @msgpack_method
    def greet(self, who: str, punctuation: str = "!"):
        self.publish("greeted", {"who": who})
        return f"hello {who}{punctuation}"

    @raw_method
    def reverse(self, data: bytes) -> bytes:
        return bytes(data)[::-1]

    @json_method
    def add(self, a, b=10):
        return a + b

    @msgpack_method
    def whoami(self):
        return os.getpid()


class Postman(ServerMethodsBase):
    """Has a method named `send`, the name of the client's own helper: the remote one wins."""
    name = "postman"
    port = 17312

    @msgpack_method
    def send(self, message: str):
        return f"sent {message}"


class PortBinder(ServerMethodsBase):
    """Binds the TCP port named by SPEEDYSVC_TEST_BIND_PORT when it starts (as the device
    simulator binds its ZeroMQ ports): a taken port is a failure restarting cannot heal."""
    name = "portbinder"
    port = 17313

    def on_start(self):
        import socket
        _mark("portbinder-start")
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", int(os.environ["SPEEDYSVC_TEST_BIND_PORT"])))

    @msgpack_method
    def ping(self):
        return os.getpid()


class Ledger(ServerMethodsBase):
    """Writes down every call it runs (one line, appended atomically) before answering, so a
    test can tell whether any call ran twice."""
    name = "ledger"
    port = 17314

    @msgpack_method
    def record(self, call_id: str, seconds: float = 0.0):
        fd = os.open(os.path.join(os.environ["SPEEDYSVC_TEST_DIR"], "ledger.txt"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{call_id} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        time.sleep(seconds)
        return call_id
