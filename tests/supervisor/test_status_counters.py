"""Counters in status are cumulative: a service's errors do not drop to 0 when it restarts."""
from __future__ import annotations

import speedysvc
from supervisor_harness import wait_until


def _errors(sup, name: str) -> int:
    return sup.service(name)["errors"]


def test_errors_count_across_a_stop_and_start_of_the_service(make_supervisor):
    sup = make_supervisor({"Work": {}})
    sup.start()
    with speedysvc.connect("work", f"shm://{sup.scope}") as c:
        for i in range(3):
            try:
                c.fail(f"bad {i}")
            except ValueError:
                pass
    wait_until(lambda: _errors(sup, "work") == 3, 20, message="3 errors to be counted")
    assert sup.cli("stop", "work").returncode == 0
    assert _errors(sup, "work") == 3          # stopped: still 3, not 0
    assert sup.cli("start", "work").returncode == 0
    with speedysvc.connect("work", f"shm://{sup.scope}") as c:
        try:
            c.fail("after the restart")
        except ValueError:
            pass
    wait_until(lambda: _errors(sup, "work") == 4, 20, message="the new error added to the old ones")
