"""How many workers a pool should have: a pure function of measurements, settings and the
policy's own memory, in the manner of Ray Serve's autoscaling policy. No processes, no clock.

Rules, in order:
- outside [min, max] the count is brought back inside at once;
- a reading is *high* when the busy fraction is above scale_up_busy or the queue per worker is
  above scale_up_queue, *low* when the busy fraction is below scale_down_busy with nothing queued;
- after scale_up_intervals high readings in a row, workers are added to bring the busy fraction
  back under scale_up_busy (at most scale_step_max at once, none within scale_up_cooldown of the
  last scale-up, none while the machine's CPU is above scale_up_max_cpu);
- after scale_down_intervals low readings in a row, one worker is removed, unless the remaining
  workers would then be busier than scale_up_busy (which would make the pool oscillate), and
  not within scale_down_cooldown of any scaling.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Any, Optional


@dataclass(frozen=True)
class Measurements:
    """Averages over one scale_interval."""
    workers: int          # live workers now
    busy: float           # fraction of the workers' time spent in calls, 0..1
    queue_depth: float    # calls waiting for a free worker
    cpu: float = 0.0      # the machine's CPU use, 0..1


@dataclass(frozen=True)
class ScalingSettings:
    min_workers: int
    max_workers: int
    up_busy: float = 0.75
    down_busy: float = 0.25
    up_queue: float = 1.0            # queued calls per worker; 0 ignores the queue
    up_intervals: int = 2
    down_intervals: int = 5
    up_cooldown: float = 5.0
    down_cooldown: float = 60.0
    step_max: int = 2
    max_cpu: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(f"need 1 <= min_workers <= max_workers, got {self.min_workers}, "
                             f"{self.max_workers}")
        if not 0 <= self.down_busy < self.up_busy <= 1:
            raise ValueError(f"need 0 <= down_busy < up_busy <= 1, got {self.down_busy}, "
                             f"{self.up_busy}")

    @classmethod
    def from_service(cls, svc: Any) -> "ScalingSettings":
        """From a ServiceConfig (speedysvc.supervisor.config)."""
        return cls(svc.min_proc_num, svc.max_proc_num, svc.scale_up_busy, svc.scale_down_busy,
                   svc.scale_up_queue, svc.scale_up_intervals, svc.scale_down_intervals,
                   svc.scale_up_cooldown, svc.scale_down_cooldown, svc.scale_step_max,
                   svc.scale_up_max_cpu)


@dataclass(frozen=True)
class ScalingState:
    last_scale_up: float = -math.inf
    last_scale_down: float = -math.inf
    high_readings: int = 0
    low_readings: int = 0


class Hold(str, enum.Enum):
    """Why a decision keeps the worker count although the load asks for a change."""
    WAITING = "waiting"            # not enough consecutive readings yet
    AT_MAX = "at_max"
    AT_MIN = "at_min"
    CPU = "cpu"                    # the machine is busy: more workers would not help
    COOLDOWN = "cooldown"
    WOULD_OVERLOAD = "would_overload"  # one worker fewer would be too busy


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    state: ScalingState           # pass to the next call
    hold: Optional[Hold] = None   # set when the load asked for a change that was not made


def decide(m: Measurements, settings: ScalingSettings, state: ScalingState,
           now: float) -> Decision:
    s, n = settings, m.workers
    if n < s.min_workers:
        return Decision(s.min_workers, f"below min_proc_num {s.min_workers}: {n} -> "
                        f"{s.min_workers}", replace(state, high_readings=0, low_readings=0))
    if n > s.max_workers:
        return Decision(s.max_workers, f"above max_proc_num {s.max_workers}: {n} -> "
                        f"{s.max_workers}", replace(state, high_readings=0, low_readings=0))

    queue_per_worker = m.queue_depth / n
    busy_high = m.busy > s.up_busy
    queue_high = s.up_queue > 0 and queue_per_worker > s.up_queue
    low = m.busy < s.down_busy and m.queue_depth == 0
    state = replace(state, high_readings=state.high_readings + 1 if busy_high or queue_high else 0,
                    low_readings=state.low_readings + 1 if low else 0)

    if state.high_readings:
        if busy_high:
            load = f"busy {m.busy:.2f} > {s.up_busy:.2f}"
        else:
            load = f"queue {queue_per_worker:.1f} per worker > {s.up_queue:.1f}"
        return _up(m, s, state, now, f"{load} for {state.high_readings} intervals")
    if state.low_readings:
        load = f"busy {m.busy:.2f} < {s.down_busy:.2f} for {state.low_readings} intervals"
        return _down(m, s, state, now, load)
    return Decision(n, f"steady at {n}: busy {m.busy:.2f} within [{s.down_busy:.2f}, "
                    f"{s.up_busy:.2f}], queue {m.queue_depth:.1f}", state)


def _up(m: Measurements, s: ScalingSettings, state: ScalingState, now: float,
        load: str) -> Decision:
    n = m.workers
    hold: Optional[tuple[Hold, str]] = None
    if state.high_readings < s.up_intervals:
        hold = Hold.WAITING, f"waiting for {s.up_intervals}"
    elif n >= s.max_workers:
        hold = Hold.AT_MAX, f"at max_proc_num {s.max_workers}"
    elif m.cpu > s.max_cpu:
        hold = Hold.CPU, f"machine CPU {m.cpu:.2f} > {s.max_cpu:.2f}, more workers would not help"
    elif now - state.last_scale_up < s.up_cooldown:
        hold = Hold.COOLDOWN, (f"scale-up cooldown, {s.up_cooldown - (now - state.last_scale_up):.1f}s "
                               f"left")
    if hold:
        return Decision(n, f"{load}: holding at {n} ({hold[1]})", state, hold[0])
    # Calls in progress plus calls waiting is the concurrency the pool must carry; size the
    # pool so that carrying it keeps the busy fraction at or below scale_up_busy.
    demand = m.busy * n + m.queue_depth
    wanted = math.ceil(demand / s.up_busy - 1e-9)
    desired = min(max(wanted, n + 1), n + s.step_max, s.max_workers)
    return Decision(desired, f"{load}: {n} -> {desired}",
                    replace(state, last_scale_up=now, high_readings=0, low_readings=0))


def _down(m: Measurements, s: ScalingSettings, state: ScalingState, now: float,
          load: str) -> Decision:
    n = m.workers
    since_scaling = now - max(state.last_scale_up, state.last_scale_down)
    hold: Optional[tuple[Hold, str]] = None
    if state.low_readings < s.down_intervals:
        hold = Hold.WAITING, f"waiting for {s.down_intervals}"
    elif n <= s.min_workers:
        hold = Hold.AT_MIN, f"at min_proc_num {s.min_workers}"
    elif m.busy * n / (n - 1) > s.up_busy - 1e-9:  # margin: float error must not flip-flop
        hold = Hold.WOULD_OVERLOAD, f"{n - 1} workers would be busier than {s.up_busy:.2f}"
    elif since_scaling < s.down_cooldown:
        hold = Hold.COOLDOWN, f"scale-down cooldown, {s.down_cooldown - since_scaling:.1f}s left"
    if hold:
        return Decision(n, f"{load}: holding at {n} ({hold[1]})", state, hold[0])
    return Decision(n - 1, f"{load}: {n} -> {n - 1}",
                    replace(state, last_scale_down=now, high_readings=0, low_readings=0))
