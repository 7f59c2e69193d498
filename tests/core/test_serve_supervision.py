"""serve() runs its workers under the supervisor's ServicePool: workers that cannot start make
serve() raise (having stopped everything), and a worker that dies is replaced."""
from __future__ import annotations

import os
import signal

import psutil
import pytest

from speedysvc import ServerMethodsBase, ServiceUnavailable, connect, msgpack_method, naming, serve
from support_services import BrokenAtStart, Echo
from waiting import wait_until


class Vanished(ServerMethodsBase):
    """A service whose module is gone by the time its workers import it (deleted or renamed
    under a deployment): restarting a worker cannot help."""
    name = "vanished"

    @msgpack_method
    def nothing(self) -> None:
        return None


Vanished.__module__ = "speedysvc_no_such_module"


def processes_of(scope: str) -> list[psutil.Process]:
    """This process's children serving `scope` (workers, TCP front)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if f"--scope {scope}" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def test_workers_that_fail_at_start_are_reported_without_waiting_out_the_start_timeout(scope):
    # "exit before they are ready" is the boot-failure error; waiting out start_timeout would
    # raise "did not start within 60s" instead
    with pytest.raises(ServiceUnavailable, match="exit before they are ready") as info:
        serve(BrokenAtStart, workers=1, scope=scope, tcp="127.0.0.1:0", start_timeout=60)
    assert "3 in a row" in str(info.value) and "exit code 1" in str(info.value)  # the last one's exit
    # everything was stopped before serve() raised
    assert processes_of(scope) == [] and naming.list_objects(scope) == []


def test_workers_whose_code_cannot_import_fail_serve_at_the_first_exit(scope):
    # one exit suffices (not BOOT_FAILURES_FATAL of them): retrying cannot help
    with pytest.raises(ServiceUnavailable, match="restarting cannot help") as info:
        serve(Vanished, workers=2, scope=scope, start_timeout=60)
    assert "'vanished' failed" in str(info.value)
    assert processes_of(scope) == [] and naming.list_objects(scope) == []


def test_a_worker_killed_with_sigkill_is_replaced(scope):
    with serve(Echo, workers=2, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.echo("before") == "before!"
        victim = svc.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: svc.restarts == 1, timeout=30, message="the death noticed")
        assert svc.wait_for_workers(2, timeout=30)
        assert victim not in svc.worker_pids() and len(svc.worker_pids()) == 2
        assert svc.boot_failures == 0  # it had served: not a failure to start
        assert {c.echo(str(i)) for i in range(20)} == {f"{i}!" for i in range(20)}


def test_restart_worker_and_scale_replace_and_add_workers_without_a_gap(scope):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        first = svc.pool.live()[0]
        svc.restart_worker(first.worker_id)
        first.popen.wait(30)  # stopped only once its replacement served
        assert svc.wait_for_workers(1, timeout=30) and first.pid not in svc.worker_pids()
        assert c.echo("replaced") == "replaced!"
        with pytest.raises(KeyError):
            svc.restart_worker(first.worker_id)
        svc.scale(2)
        assert svc.wait_for_workers(2, timeout=30)
        assert svc.restarts == 0  # asked for: neither counts as a crash


def test_pool_options_are_the_supervisors_and_unknown_ones_are_refused(scope):
    from speedysvc import WorkerDied
    with pytest.raises(TypeError, match="unknown service options worker_hang_timout"):
        serve(Echo, scope=scope, options={"worker_hang_timout": 1.0})
    assert processes_of(scope) == [] and naming.list_objects(scope) == []
    # a call stuck for longer than worker_hang_timeout: the pool kills its worker, the caller
    # hears of it, and a replacement serves the next call
    with serve(Echo, workers=1, scope=scope, options={"worker_hang_timeout": 1.0}) as svc, \
            connect(Echo, svc.shm_address) as c:
        with pytest.raises(WorkerDied):
            c.sleep(60)
        assert svc.wait_for_workers(1, timeout=30)
        assert c.echo("after") == "after!"
