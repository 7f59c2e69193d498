"""ServicePool decisions driven by hand: a fake worker pool and a fake clock stand in for
processes and time (the OS facade), so back-off, crash loops, recycling, hang detection,
start timeouts and scaling are checked fast and exactly. The real-process tests in
test_arbiter_*.py show the same behaviour end to end."""
from __future__ import annotations

import dataclasses
import logging

import pytest

from speedysvc.shm import service_segment as ss
from speedysvc.supervisor.config import ServiceConfig
from speedysvc.supervisor.options import SERVICE, options_for
from speedysvc.supervisor.restart_policy import RestartPolicy
from speedysvc.supervisor.service_pool import FAILED, RUNNING, STARTING, STOPPED, STOPPING, ServicePool
from supervisor_fakes import FakePool, FakeSystem
from supervisor_services import Work


def service_config(**overrides):
    values = {name: opt.default_value() for name, opt in options_for(SERVICE).items()}
    values.update(import_from="supervisor_services", max_proc_num=4, restart_backoff_initial=0.1,
                  restart_backoff_max=1.0, crash_loop_restarts=4, crash_loop_window=30.0,
                  scale_up_max_cpu=1.0, worker_hang_timeout=0.0)
    values.update(overrides)
    return ServiceConfig(name="Work", **values)


def make(**overrides):
    system = FakeSystem()
    pools = []

    def factory(*args):
        pools.append(FakePool(system))
        return pools[-1]

    sp = ServicePool(service_config(**overrides), Work, "unit", system=system, pool_factory=factory)
    return sp, system, pools


def started(**overrides):
    sp, system, pools = make(**overrides)
    sp.start()
    pool = pools[-1]
    pool.ready_all()
    sp.tick()
    assert sp.status == RUNNING
    return sp, system, pool


# -- restart back-off and crash loops ------------------------------------------------------------
def test_restart_policy_doubles_the_delay_up_to_the_maximum_and_detects_a_loop():
    p = RestartPolicy(initial=1.0, maximum=4.0, loop_restarts=5, loop_window=60.0)
    assert [p.record_crash(t) for t in (0, 1, 2, 3)] == [1.0, 2.0, 4.0, 4.0]
    assert p.record_crash(4) is None                       # 5 crashes within 60 s


def test_restart_policy_forgives_after_a_quiet_window():
    p = RestartPolicy(initial=1.0, maximum=8.0, loop_restarts=3, loop_window=10.0)
    assert p.record_crash(0) == 1.0 and p.record_crash(1) == 2.0
    assert p.record_crash(100) == 1.0                      # quiet for longer than the window


def test_a_crashed_worker_is_replaced_after_the_back_off_delay():
    sp, system, pool = started()
    first = pool.workers[0]
    first.exit_code = 1
    sp.tick()
    assert pool.live_ids() == []                           # not at once
    system.advance(0.09)
    sp.tick()
    assert pool.live_ids() == []
    system.advance(0.02)
    sp.tick()
    assert pool.live_ids() == [2]
    assert sp.restarts == 1 and "exit code 1" in sp.last_error


def test_repeated_crashes_back_off_exponentially_then_fail_the_service():
    sp, system, pool = started()
    waits = []
    for _ in range(3):
        pool.workers[0].exit_code = 1
        sp.tick()
        crashed_at = system.now
        while not pool.live_ids():
            system.advance(0.01)
            sp.tick()
        waits.append(round(system.now - crashed_at, 2))
        pool.ready_all()
    assert waits == pytest.approx([0.1, 0.2, 0.4], abs=0.011)
    pool.workers[0].exit_code = 1
    sp.tick()                                              # the 4th crash within the window
    assert sp.status == FAILED and "crash loop" in sp.last_error
    assert pool.closed and sp.pool is None
    system.advance(10)
    sp.tick()
    assert len(pool.log) == 4 + 0 and all(k == "spawn" for k, _ in pool.log)  # no more spawns


def test_workers_exiting_before_they_are_ready_are_counted_in_a_row():
    sp, system, pools = make()
    sp.start()
    pool = pools[-1]
    for n in (1, 2):
        pool.workers[0].exit_code = 1                      # still starting
        sp.tick()
        assert sp.boot_failures == n and sp.status_dict({}, {})["boot_failures"] == n
        system.advance(1.0)                                # the back-off
        sp.tick()
    pool.ready_all()
    sp.tick()
    pool.workers[0].exit_code = 1                          # it had served
    sp.tick()
    assert sp.boot_failures == 0 and sp.restarts == 3


# -- hung and slow workers ----------------------------------------------------------------------
def test_a_call_running_longer_than_the_hang_timeout_gets_its_worker_killed():
    sp, system, pool = started(worker_hang_timeout=5.0)
    w = pool.workers[0]
    pool.segment.set_worker_word(w.slot, ss.W_STATE, ss.BUSY)
    pool.segment.set_worker_word(w.slot, ss.W_BUSY_SINCE_NS, system.time_ns())
    system.advance(4.9)
    sp.tick()
    assert ("kill", 1) not in pool.log
    system.advance(0.2)
    sp.tick()
    assert ("kill", 1) in pool.log
    sp.tick()                                              # reaped: a crash, so back-off applies
    assert "hung" in sp.last_error and sp.restarts == 1
    system.advance(0.1)
    sp.tick()
    assert pool.live_ids() == [2]


def test_an_idle_worker_without_heartbeat_is_hung_too():
    sp, system, pool = started(worker_hang_timeout=5.0)
    system.advance(3)
    pool.heartbeat_all()
    system.advance(3)
    sp.tick()
    assert ("kill", 1) not in pool.log                     # 3 s since the last beat
    system.advance(2.1)
    sp.tick()
    assert ("kill", 1) in pool.log


def test_a_worker_that_does_not_become_ready_in_time_is_killed():
    sp, system, pools = make(start_timeout=10.0)
    sp.start()
    pool = pools[-1]
    system.advance(10.1)
    sp.tick()
    assert ("kill", 1) in pool.log
    sp.tick()
    assert "did not become ready within start_timeout" in sp.last_error


# -- memory recycling ---------------------------------------------------------------------------
def test_memory_recycle_starts_the_replacement_before_stopping_the_old_worker():
    sp, system, pool = started(max_proc_mem_bytes=100 * 2**20, metrics_interval=1.0)
    old = pool.workers[0]
    system.rss_by_pid[old.pid] = 150 * 2**20
    system.advance(1.0)
    sp.tick()
    assert pool.log[-1] == ("spawn", 2)                    # replacement first
    assert old.stopping_since is None                      # the old one still serves
    system.advance(0.05)
    sp.tick()
    assert old.stopping_since is None                      # replacement not ready yet
    pool.ready_all()
    sp.tick()
    assert old.stopping_since is not None and ("stop", 1) in pool.log   # graceful, not kill
    assert ("kill", 1) not in pool.log
    pool.exit_stopping()
    sp.tick()
    assert pool.live_ids() == [2] and sp.restarts == 1 and sp.status == RUNNING


# -- scaling -------------------------------------------------------------------------------------
def test_load_scales_the_pool_up_and_every_decision_is_logged(caplog):
    sp, system, pool = started(min_proc_num=1, max_proc_num=3, scale_interval=1.0,
                               scale_up_intervals=2, scale_up_cooldown=0.0, scale_step_max=2)
    caplog.set_level(logging.DEBUG, logger="speedysvc.service.work")
    w = pool.workers[0]
    busy = 0
    for _ in range(2):                                     # fully busy for two intervals
        system.advance(1.0)
        busy += int(1e9)
        pool.segment.set_worker_word(w.slot, ss.W_BUSY_NS, busy)
        pool.segment.depth = 3
        pool.heartbeat_all()
        sp.tick()
    assert sp.target == 3 and len(pool.live_ids()) == 3
    decisions = [r.getMessage() for r in caplog.records if "scaling work" in r.getMessage()]
    assert any("holding at 1 (waiting for 2)" in m for m in decisions)
    assert any("1 -> 3" in m for m in decisions)


def test_manual_scale_respects_bounds_and_counts_as_scaling():
    sp, system, pool = started(min_proc_num=1, max_proc_num=3)
    assert sp.scale(5) == (False, "work: 5 is outside min_proc_num..max_proc_num (1..3)")
    ok, _ = sp.scale(3)
    assert ok and len(pool.live_ids()) == 3
    ok, _ = sp.scale(1)
    assert ok and len(pool.live_ids()) == 1
    assert ("stop", 3) in pool.log and ("stop", 2) in pool.log   # newest idle ones go first


# -- stopping -------------------------------------------------------------------------------------
def test_stop_is_graceful_then_kills_after_graceful_timeout():
    sp, system, pool = started(min_proc_num=2, max_proc_num=2, graceful_timeout=3.0)
    a, b = pool.workers
    sp.stop()
    assert sp.status == STOPPING and a.stopping_since is not None and b.stopping_since is not None
    a.exit_code = 0                                        # a finished its call
    system.advance(2.9)
    sp.tick()
    assert ("kill", b.worker_id) not in pool.log
    system.advance(0.2)
    sp.tick()
    assert ("kill", b.worker_id) in pool.log
    sp.tick()
    assert sp.status == STOPPED and pool.closed
    assert sp.restarts == 0                                # stopping is not crashing


def test_rolling_restart_replaces_every_worker_before_stopping_the_old_ones():
    sp, system, pool = started(min_proc_num=2, max_proc_num=2)
    sp.restart()
    assert [w.worker_id for w in pool.workers] == [1, 2, 3, 4]
    assert all(w.stopping_since is None for w in pool.workers[:2])
    pool.ready_all()
    sp.tick()
    assert [w.stopping_since is not None for w in pool.workers] == [True, True, False, False]


def test_reload_of_live_options_keeps_the_workers():
    sp, system, pool = started(min_proc_num=1, max_proc_num=2)
    new = dataclasses.replace(sp.config, min_proc_num=2, worker_hang_timeout=9.0)
    sp.reconfigure(new, ["min_proc_num", "worker_hang_timeout"])
    assert pool.live_ids() == [1, 2] and sp.status == RUNNING
    changed = dataclasses.replace(new, force_insecure_serialisation=True)
    sp.reconfigure(changed, ["force_insecure_serialisation"])
    assert sp.status == STOPPING and sp.start_when_stopped
    pool.exit_stopping()
    sp.tick()
    assert sp.status == STARTING and sp.pool is not pool   # restarted with a fresh pool
