"""The scaling decision, without processes: readings in, desired worker count and reason out."""
import itertools
import math
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from speedysvc.supervisor.config import load_config
from speedysvc.supervisor.scaling_policy import (Measurements, ScalingSettings, ScalingState,
                                                 decide)

SETTINGS = ScalingSettings(min_workers=1, max_workers=8, up_busy=0.75, down_busy=0.25,
                           up_queue=1.0, up_intervals=3, down_intervals=4, up_cooldown=10,
                           down_cooldown=60, step_max=2, max_cpu=0.95)


def run(readings, settings=SETTINGS, state=ScalingState(), start=1000.0, interval=2.0):
    """Feed readings [(workers, busy, queue[, cpu])] one interval apart; the decisions."""
    decisions = []
    for k, r in enumerate(readings):
        d = decide(Measurements(*r), settings, state, start + k * interval)
        decisions.append(d)
        state = d.state
    return decisions


def test_settings_must_be_consistent():
    with pytest.raises(ValueError):
        ScalingSettings(min_workers=3, max_workers=2)
    with pytest.raises(ValueError):
        ScalingSettings(min_workers=1, max_workers=2, up_busy=0.3, down_busy=0.3)
    with pytest.raises(ValueError):
        ScalingSettings(min_workers=0, max_workers=2)


def test_settings_come_from_the_service_config(tmp_path):
    ini = tmp_path / "x.ini"
    ini.write_text(textwrap.dedent("""
        [EchoServer]
        import_from = anything
        min_proc_num = 2
        max_proc_num = 6
        scale_up_busy = 0.8
        scale_down_cooldown = 2m
        """))
    svc = load_config(ini, check_imports=False).services[0]
    s = ScalingSettings.from_service(svc)
    assert (s.min_workers, s.max_workers, s.up_busy, s.down_busy) == (2, 6, 0.8, 0.25)
    assert (s.up_intervals, s.down_intervals, s.down_cooldown, s.step_max) == (2, 5, 120.0, 2)


def test_a_pool_below_its_minimum_is_refilled_at_once():
    [d] = run([(0, 0.0, 0)], ScalingSettings(min_workers=2, max_workers=4))
    assert (d.desired, d.reason) == (2, "below min_proc_num 2: 0 -> 2")


def test_a_pool_above_its_maximum_is_trimmed_at_once():
    [d] = run([(10, 1.0, 5)])
    assert (d.desired, d.reason) == (8, "above max_proc_num 8: 10 -> 8")


def test_steady_load_changes_nothing():
    [d] = run([(2, 0.5, 0)])
    assert (d.desired, d.reason) == (2, "steady at 2: busy 0.50 within [0.25, 0.75], queue 0.0")


def test_scale_up_needs_consecutive_busy_readings():
    ds = run([(2, 0.92, 0)] * 3)
    assert [d.desired for d in ds] == [2, 2, 3]
    assert ds[0].reason == "busy 0.92 > 0.75 for 1 intervals: holding at 2 (waiting for 3)"
    assert ds[2].reason == "busy 0.92 > 0.75 for 3 intervals: 2 -> 3"


def test_a_calm_reading_resets_the_count():
    ds = run([(2, 0.92, 0), (2, 0.92, 0), (2, 0.5, 0), (2, 0.92, 0), (2, 0.92, 0)])
    assert [d.desired for d in ds] == [2] * 5


def test_scale_up_is_sized_to_the_load_and_capped_by_step_and_max():
    # 4 workers fully busy with 4 queued: 8 calls in flight need ceil(8 / 0.75) = 11 workers
    ds = run([(4, 1.0, 4)] * 3)
    assert ds[-1].desired == 6  # step_max 2
    big_step = ScalingSettings(min_workers=1, max_workers=8, up_intervals=1, step_max=10)
    [d] = run([(4, 1.0, 4)], big_step)
    assert (d.desired, d.reason) == (8, "busy 1.00 > 0.75 for 1 intervals: 4 -> 8")


def test_a_long_queue_alone_triggers_a_scale_up():
    s = ScalingSettings(min_workers=1, max_workers=8, up_busy=1.0, down_busy=0.25,
                        up_intervals=1, up_queue=1.0)
    [d] = run([(2, 1.0, 6)], s)
    assert (d.desired, d.reason) == (4, "queue 3.0 per worker > 1.0 for 1 intervals: 2 -> 4")
    s0 = ScalingSettings(min_workers=1, max_workers=8, up_busy=1.0, up_queue=0, up_intervals=1)
    assert run([(2, 1.0, 6)], s0)[0].desired == 2


def test_no_scale_up_when_the_machine_is_out_of_cpu():
    ds = run([(2, 0.95, 0, 0.99)] * 3)
    assert ds[-1].desired == 2
    assert ds[-1].reason.endswith("(machine CPU 0.99 > 0.95, more workers would not help)")


def test_no_scale_up_beyond_the_maximum():
    ds = run([(8, 0.99, 3)] * 3)
    assert ds[-1].desired == 8 and ds[-1].reason.endswith("holding at 8 (at max_proc_num 8)")


def test_scale_up_cooldown():
    s = ScalingSettings(min_workers=1, max_workers=8, up_intervals=1, up_cooldown=10)
    ds = run([(2, 0.9, 0), (3, 0.9, 0), (3, 0.9, 0), (3, 0.9, 0), (3, 0.9, 0), (3, 0.9, 0)], s)
    assert [d.desired for d in ds] == [3, 3, 3, 3, 3, 4]  # readings 2 s apart
    assert ds[1].reason.endswith("(scale-up cooldown, 8.0s left)")


def test_scale_down_is_slow_one_worker_at_a_time():
    s = ScalingSettings(min_workers=1, max_workers=8, down_intervals=4, down_cooldown=5)
    ds = run([(4, 0.1, 0)] * 4 + [(3, 0.1, 0)] * 4, s)
    assert [d.desired for d in ds] == [4, 4, 4, 3, 3, 3, 3, 2]
    assert ds[3].reason == "busy 0.10 < 0.25 for 4 intervals: 4 -> 3"


def test_no_scale_down_soon_after_a_scale_up():
    s = ScalingSettings(min_workers=1, max_workers=8, down_intervals=1, down_cooldown=60)
    state = ScalingState(last_scale_up=1000.0)
    d = decide(Measurements(3, 0.1, 0), s, state, 1030.0)
    assert d.desired == 3 and d.reason.endswith("(scale-down cooldown, 30.0s left)")
    assert decide(Measurements(3, 0.1, 0), s, state, 1060.0).desired == 2


def test_no_scale_down_that_would_push_the_rest_over_the_threshold():
    s = ScalingSettings(min_workers=1, max_workers=8, up_busy=0.5, down_busy=0.4,
                        down_intervals=1, down_cooldown=0)
    d = decide(Measurements(2, 0.3, 0), s, ScalingState(), 0.0)  # 1 worker would be 0.6 busy
    assert d.desired == 2 and d.reason.endswith("(1 workers would be busier than 0.50)")


def test_no_scale_down_below_the_minimum_or_with_calls_queued():
    s = ScalingSettings(min_workers=2, max_workers=8, down_intervals=1, down_cooldown=0)
    assert decide(Measurements(2, 0.0, 0), s, ScalingState(), 0.0).desired == 2
    d = decide(Measurements(3, 0.1, 1), s, ScalingState(), 0.0)
    assert d.desired == 3 and d.reason.startswith("steady")


def test_scaling_resets_the_reading_counts():
    ds = run([(2, 0.9, 0)] * 3)
    assert ds[-1].state.high_readings == 0 and ds[-1].state.last_scale_up == 1004.0


# ------------------------------------------------------------------ properties

measurements = st.builds(
    Measurements,
    workers=st.integers(min_value=0, max_value=40),
    busy=st.floats(min_value=0, max_value=1),
    queue_depth=st.floats(min_value=0, max_value=200),
    cpu=st.floats(min_value=0, max_value=1))


@st.composite
def scaling_settings(draw):
    lo = draw(st.integers(min_value=1, max_value=8))
    hi = draw(st.integers(min_value=lo, max_value=16))
    down = draw(st.floats(min_value=0, max_value=0.9))
    up = draw(st.floats(min_value=down + 0.05, max_value=1))
    return ScalingSettings(
        lo, hi, up, down, draw(st.floats(min_value=0, max_value=4)),
        draw(st.integers(min_value=1, max_value=5)), draw(st.integers(min_value=1, max_value=8)),
        draw(st.floats(min_value=0, max_value=30)), draw(st.floats(min_value=0, max_value=120)),
        draw(st.integers(min_value=1, max_value=4)), draw(st.floats(min_value=0.5, max_value=1)))


states = st.builds(
    ScalingState,
    last_scale_up=st.one_of(st.just(-math.inf), st.floats(min_value=0, max_value=1000)),
    last_scale_down=st.one_of(st.just(-math.inf), st.floats(min_value=0, max_value=1000)),
    high_readings=st.integers(min_value=0, max_value=10),
    low_readings=st.integers(min_value=0, max_value=10))

nows = st.floats(min_value=1000, max_value=2000)


@settings(max_examples=500, database=None)
@given(measurements, scaling_settings(), states, nows)
def test_desired_is_always_within_bounds(m, s, state, now):
    d = decide(m, s, state, now)
    assert s.min_workers <= d.desired <= s.max_workers
    assert d.reason


@settings(max_examples=500, database=None)
@given(measurements, scaling_settings(), states, nows)
def test_no_change_in_a_direction_during_its_cooldown(m, s, state, now):
    d = decide(m, s, state, now)
    if not s.min_workers <= m.workers <= s.max_workers:
        return  # bringing a pool back within bounds is not load-driven
    if now - state.last_scale_up < s.up_cooldown:
        assert d.desired <= m.workers
    if now - max(state.last_scale_up, state.last_scale_down) < s.down_cooldown:
        assert d.desired >= m.workers


def _is_monotonic(counts):
    steps = [b - a for a, b in itertools.pairwise(counts) if b != a]
    return all(x > 0 for x in steps) or all(x < 0 for x in steps)


@settings(max_examples=200, database=None)
@given(st.floats(min_value=0, max_value=30), scaling_settings(),
       st.integers(min_value=1, max_value=16))
def test_constant_load_never_oscillates_and_settles(load, s, start):
    """`load` calls in flight on average: busy = load / workers, the excess queues."""
    workers = min(max(start, s.min_workers), s.max_workers)
    state, counts = ScalingState(), [workers]
    # long enough to walk from max to min, 2 s per reading, and then stay put for a while
    per_step = max(s.up_cooldown, s.down_cooldown) / 2 + s.up_intervals + s.down_intervals + 1
    for k in range(int((s.max_workers - s.min_workers + 1) * per_step) + 60):
        m = Measurements(workers, min(1.0, load / workers), max(0.0, load - workers), 0.5)
        d = decide(m, s, state, 1000.0 + 2 * k)
        state, workers = d.state, d.desired
        counts.append(workers)
    assert _is_monotonic(counts), counts
    assert len(set(counts[-50:])) == 1, counts  # settled


@settings(max_examples=200, database=None)
@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=20),
       scaling_settings(), st.integers(min_value=1, max_value=16))
def test_constant_readings_never_oscillate(busy, queue, s, start):
    workers = min(max(start, s.min_workers), s.max_workers)
    state, counts = ScalingState(), [workers]
    for k in range(300):
        d = decide(Measurements(workers, busy, queue, 0.5), s, state, 1000.0 + 2 * k)
        state, workers = d.state, d.desired
        counts.append(workers)
    assert _is_monotonic(counts), counts


def test_a_held_decision_says_why_as_a_code_not_only_in_words():
    from speedysvc.supervisor.scaling_policy import Hold
    settings = ScalingSettings(min_workers=1, max_workers=2, up_busy=0.75, down_busy=0.25,
                               up_queue=1.0, up_intervals=1, down_intervals=1, up_cooldown=0.0,
                               down_cooldown=0.0, step_max=2, max_cpu=1.0)
    busy = Measurements(workers=2, busy=1.0, queue_depth=0, cpu=0.1)
    assert decide(busy, settings, ScalingState(), 100.0).hold == Hold.AT_MAX
    idle = Measurements(workers=1, busy=0.0, queue_depth=0, cpu=0.1)
    assert decide(idle, settings, ScalingState(), 100.0).hold == Hold.AT_MIN
    steady = Measurements(workers=1, busy=0.5, queue_depth=0, cpu=0.1)
    assert decide(steady, settings, ScalingState(), 100.0).hold is None
