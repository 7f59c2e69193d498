"""Worker health as a pure function of readings and settings (no processes)."""
from __future__ import annotations

from speedysvc.shm import service_segment as ss
from speedysvc.supervisor.worker_health import KILL, RETIRE, HealthReading, HealthSettings, judge

SETTINGS = HealthSettings(start_timeout=30, worker_hang_timeout=10, graceful_timeout=5,
                          max_proc_mem_bytes=100 * 2**20)
NOW, WALL = 1000.0, 2_000_000_000_000


def reading(**kw):
    values = dict(state=ss.IDLE, spawned_at=NOW - 60, stopping_since=None, busy_since_ns=0,
                  heartbeat_ns=WALL - 1_000_000_000, rss=None)
    values.update(kw)
    return HealthReading(**values)


def test_a_healthy_worker_is_left_alone():
    assert judge(reading(), SETTINGS, NOW, WALL) is None
    assert judge(reading(state=ss.BUSY, busy_since_ns=WALL - 9 * 10**9), SETTINGS, NOW, WALL) is None


def test_a_worker_that_never_became_ready_is_killed_after_start_timeout():
    v = judge(reading(state=ss.STARTING, spawned_at=NOW - 31), SETTINGS, NOW, WALL)
    assert v.action == KILL and "start_timeout 30s" in v.reason and not v.dump_stacks
    assert judge(reading(state=ss.STARTING, spawned_at=NOW - 29), SETTINGS, NOW, WALL) is None


def test_a_long_call_or_a_silent_idle_loop_is_a_hang_with_stacks_dumped_first():
    busy = judge(reading(state=ss.BUSY, busy_since_ns=WALL - 11 * 10**9), SETTINGS, NOW, WALL)
    assert busy.action == KILL and busy.dump_stacks and "one call has run for 11.0s" in busy.reason
    silent = judge(reading(heartbeat_ns=WALL - 12 * 10**9), SETTINGS, NOW, WALL)
    assert silent.action == KILL and silent.dump_stacks and "no heartbeat" in silent.reason
    never = HealthSettings(30, 0, 5, 0)   # worker_hang_timeout 0: never
    assert judge(reading(heartbeat_ns=WALL - 10**12), never, NOW, WALL) is None


def test_a_worker_that_does_not_stop_in_time_is_killed():
    v = judge(reading(stopping_since=NOW - 6), SETTINGS, NOW, WALL)
    assert v.action == KILL and "graceful_timeout 5s" in v.reason


def test_memory_over_the_limit_retires_a_ready_worker_gracefully():
    v = judge(reading(rss=101 * 2**20), SETTINGS, NOW, WALL)
    assert v.action == RETIRE and "101 MiB" in v.reason
    assert judge(reading(rss=99 * 2**20), SETTINGS, NOW, WALL) is None
    assert judge(reading(state=ss.STARTING, spawned_at=NOW - 1, rss=500 * 2**20), SETTINGS, NOW, WALL) is None
