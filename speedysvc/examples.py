"""Example services run by example.ini, one method per encoder.

    python -m speedysvc example.ini
    python -c "import speedysvc; c = speedysvc.connect('echo', 'shm://SCOPE'); print(c.echo('hi'))"
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from .methods import (ServerMethodsBase, json_method, marshal_method, msgpack_method, pickle_method,
                      raw_method)

log = logging.getLogger(__name__)


class Echo(ServerMethodsBase):
    """Returns what it is given, in every encoding."""
    name = "echo"
    port = 5160

    @msgpack_method
    def echo(self, data: Any, suffix: str = "") -> Any:
        return data + suffix if isinstance(data, str) else data

    @raw_method
    def echo_raw(self, data: bytes) -> bytes:
        return bytes(data)

    @json_method
    def echo_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @pickle_method
    def echo_pickle(self, obj: Any) -> Any:
        return obj

    @msgpack_method
    def whoami(self) -> int:
        """The pid of the worker that took the call (shows calls spreading over workers)."""
        return os.getpid()


class Calculator(ServerMethodsBase):
    """A little arithmetic, and a slow method to watch the pool scale."""
    name = "calculator"
    port = 5161

    @msgpack_method
    def add(self, a: Any, b: Any) -> Any:
        return a + b

    @json_method
    def divide(self, a: float, b: float) -> float:
        if b == 0:
            log.warning("division by zero requested")
            raise ZeroDivisionError("cannot divide by zero")
        return a / b

    @marshal_method
    def sqrt(self, x: float) -> float:
        return math.sqrt(x)

    @msgpack_method
    def slow_sum(self, n: int, seconds: float = 0.1) -> int:
        """Sum of 0..n-1 after pretending to work for `seconds`."""
        time.sleep(min(float(seconds), 10.0))
        return n * (n - 1) // 2
