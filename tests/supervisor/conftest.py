"""Fixtures for the supervisor tests: a real supervisor per test, cleaned up afterwards."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (HERE, os.path.dirname(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from supervisor_harness import Supervisor  # noqa: E402


@pytest.fixture
def make_supervisor(tmp_path, scope):
    """make_supervisor(services, defaults=None, web_monitor=None) -> Supervisor (not started)."""
    made: list[Supervisor] = []

    def make(services, **kwargs) -> Supervisor:
        sup = Supervisor(tmp_path, scope, services, **kwargs)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.cleanup()
