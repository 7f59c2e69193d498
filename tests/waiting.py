"""The one way tests wait: poll a condition until it holds or a deadline passes."""
from __future__ import annotations

import time
from typing import Any, Callable, Optional


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: Optional[str] = None) -> Any:
    """Return the first truthy value of `predicate()`; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)
