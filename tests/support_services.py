"""Service classes the tests run in real worker processes (importable by module path)."""
from __future__ import annotations

import os
import signal
import time

import numpy as np

from speedysvc import (ServerMethodsBase, json_method, marshal_method, msgpack_method, pickle_method,
                       raw_method)


class EchoError(Exception):
    """A user-defined exception type that must re-raise in the client as itself."""


class Echo(ServerMethodsBase):
    name = "echo"
    port = 15555

    @msgpack_method
    def echo(self, data, suffix="!"):
        if isinstance(data, str):
            return data + suffix
        return data

    @raw_method
    def echo_raw(self, data):
        return data

    @json_method
    def echo_json(self, *args, **kwargs):
        return [list(args), kwargs]

    @pickle_method
    def echo_pickle(self, obj):
        return obj

    @marshal_method
    def echo_marshal(self, obj):
        return obj

    @msgpack_method
    def array_info(self, arr):
        return {"dtype": arr.dtype.str, "shape": list(arr.shape), "sum": float(np.asarray(arr, dtype=float).sum())}

    @msgpack_method
    def tagged(self, client_id, n):
        return [client_id, n, os.getpid()]

    @msgpack_method
    def pid(self):
        return os.getpid()

    @msgpack_method
    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    @msgpack_method
    def block_until(self, path, limit):
        """Return once `path` exists (True) or after `limit` seconds (False): a call that
        cannot finish before the test says so."""
        deadline = time.monotonic() + limit
        while not os.path.exists(path):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    @msgpack_method
    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)

    @msgpack_method
    def fail_builtin(self, message):
        raise ValueError(message)

    @msgpack_method
    def fail_custom(self, message):
        raise EchoError(message)

    @msgpack_method
    def publish_many(self, topic, n, start=0):
        for i in range(start, start + n):
            self.publish(topic, {"i": i})
        return n

    @msgpack_method
    def print_line(self, text):
        print(text, flush=True)
        return True


class Counter(ServerMethodsBase):
    """Records each executed call in a file, so tests can tell whether a call ran twice."""
    name = "counter"
    port = 15556

    @msgpack_method
    def record_then_die(self, path):
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    @msgpack_method
    def record_then_sleep(self, path, seconds):
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        return "slept"


class BrokenAtStart(ServerMethodsBase):
    """A service whose workers always fail while starting."""
    name = "broken"

    def on_start(self):
        raise RuntimeError("cannot start: missing resource")

    @msgpack_method
    def nothing(self):
        return None


class SiblingCaller(ServerMethodsBase):
    """Calls another service of the same scope from inside a worker."""
    name = "sibling_caller"

    @msgpack_method
    def call_echo(self, text):
        from speedysvc import connect
        with connect(Echo, "shm://") as c:
            return [self.scope, c.echo(text)]


class ArrayViews(ServerMethodsBase):
    """Zero-copy arguments: a zero_copy method reads the array in the client's channel."""
    name = "array_views"
    port = 15570

    @msgpack_method(zero_copy=True)
    def in_place(self, arr):
        return [bool(arr.flags.owndata), float(arr.sum())]

    @msgpack_method
    def copied(self, arr):
        return [bool(arr.flags.owndata), float(arr.sum())]


class Ledger(ServerMethodsBase):
    """Appends every call it runs to a file (one write, O_APPEND), so a test can tell whether
    any call ran twice or ran without its caller hearing of it."""
    name = "ledger"
    port = 15571

    @msgpack_method
    def record(self, path, call_id, seconds=0.0):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{call_id}\n".encode())
        finally:
            os.close(fd)
        if seconds:
            time.sleep(seconds)
        return call_id


class Shapes(ServerMethodsBase):
    """Results and failures of every shape a raw or msgpack method can produce: the compiled
    worker loop serves the usual ones itself and must hand each unusual one to Python."""

    name = "shapes"

    @raw_method
    def raw_echo(self, data):
        return data

    @raw_method
    def raw_to_str(self, data):
        return data.decode()

    @raw_method
    def raw_bytearray(self, data):
        return bytearray(data)

    @raw_method
    def raw_fail(self, data):
        raise EchoError(data.decode())

    @raw_method
    def raw_big(self, data):
        return b"x" * int(data)

    @msgpack_method
    def args_back(self, a, b=2, *rest, **named):
        return [a, b, list(rest), named]

    @msgpack_method
    def returns_set(self, items):
        return set(items)

    @msgpack_method
    def returns_array(self, n):
        return np.arange(n, dtype=np.int64)

    @msgpack_method
    def returns_object(self):
        return object()

    @msgpack_method
    def returns_big(self, n):
        return "y" * n

    @msgpack_method
    def fails(self, message):
        raise EchoError(message)
