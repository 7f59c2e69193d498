"""Suite-wide fixtures: a fresh shared-memory scope per test, and leak checks.

Every test that runs services uses its own scope; after the test, nothing of that scope may
remain in /dev/shm and no worker process it started may remain alive.
"""
from __future__ import annotations

import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:  # service classes for worker processes live here
    sys.path.insert(0, TESTS_DIR)

from speedysvc import naming  # noqa: E402
from waiting import wait_until  # noqa: E402,F401 - tests import it from here too
from speedysvc.serve import new_scope  # noqa: E402

_scopes_used: list[str] = []



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
