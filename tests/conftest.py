"""Suite-wide fixtures: a fresh shared-memory scope per test, and leak checks.

Every test that runs services uses its own scope; after the test, nothing of that scope may
remain in /dev/shm and no worker process it started may remain alive.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:  # service classes for worker processes live here
    sys.path.insert(0, TESTS_DIR)

from speedysvc import naming  # noqa: E402
from speedysvc.serve import new_scope  # noqa: E402

_scopes_used: list[str] = []


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def scope():
    s = new_scope()
    _scopes_used.append(s)
    yield s
    try:
        wait_until(lambda: not naming.list_objects(s), timeout=5,
                   message=f"shared-memory objects of scope {s} to be removed")
    finally:
        leftovers = naming.list_objects(s)
        naming.sweep(s)
    assert not leftovers, f"test left shared-memory objects behind: {leftovers}"


def pytest_sessionfinish(session, exitstatus):
    leftovers = [o for s in _scopes_used for o in naming.list_objects(s)]
    for s in _scopes_used:
        naming.sweep(s)
    if leftovers:
        print(f"\nshared-memory objects left by tests (swept now): {leftovers}", file=sys.stderr)
        session.exitstatus = 1
