"""Whether a worker is healthy: a pure function from what is read of one worker (its state in
the worker table, its heartbeat and busy-since stamps, its memory) and the service's settings
to what to do about it. ServicePool gathers the readings and carries the verdicts out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..shm import service_segment as ss

KILL = "kill"        # at once (after writing its stacks to its log, when `dump_stacks`)
RETIRE = "retire"    # gracefully: a replacement starts first


@dataclass(frozen=True)
class HealthReading:
    state: int                       # the worker table's state word (ss.STARTING, ss.IDLE, ...)
    spawned_at: float                # monotonic
    stopping_since: Optional[float]  # monotonic, when asked to stop
    busy_since_ns: int               # wall clock, while a call runs (0: none)
    heartbeat_ns: int                # wall clock of the idle loop's last beat (0: none yet)
    rss: Optional[int] = None        # bytes; None when not measured this time


@dataclass(frozen=True)
class HealthSettings:
    start_timeout: float
    worker_hang_timeout: float       # 0: never
    graceful_timeout: float
    max_proc_mem_bytes: int          # 0: unlimited

    @classmethod
    def from_service(cls, config: object) -> "HealthSettings":
        return cls(config.start_timeout, config.worker_hang_timeout,  # type: ignore[attr-defined]
                   config.graceful_timeout, config.max_proc_mem_bytes)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str
    dump_stacks: bool = False


def judge(r: HealthReading, s: HealthSettings, now: float, wall_ns: int) -> Optional[Verdict]:
    """What to do about one live worker now; None: nothing."""
    if r.stopping_since is not None:
        if now - r.stopping_since > s.graceful_timeout:
            return Verdict(KILL, f"did not stop within graceful_timeout {s.graceful_timeout:g}s")
        return None
    if r.state == ss.STARTING:
        if now - r.spawned_at > s.start_timeout:
            return Verdict(KILL, f"did not become ready within start_timeout {s.start_timeout:g}s")
        return None
    limit = int(s.worker_hang_timeout * 1e9)
    if limit and r.state == ss.BUSY and r.busy_since_ns and wall_ns - r.busy_since_ns > limit:
        return Verdict(KILL, f"hung: one call has run for {(wall_ns - r.busy_since_ns) / 1e9:.1f}s "
                             f"(worker_hang_timeout {s.worker_hang_timeout:g}s)", dump_stacks=True)
    if limit and r.state == ss.IDLE and r.heartbeat_ns and wall_ns - r.heartbeat_ns > limit:
        return Verdict(KILL, f"hung: no heartbeat for {(wall_ns - r.heartbeat_ns) / 1e9:.1f}s "
                             f"(worker_hang_timeout {s.worker_hang_timeout:g}s)", dump_stacks=True)
    if (s.max_proc_mem_bytes and r.rss is not None and r.rss > s.max_proc_mem_bytes
            and r.state in (ss.IDLE, ss.BUSY)):
        return Verdict(RETIRE, f"uses {r.rss >> 20} MiB, over max_proc_mem_bytes "
                               f"{s.max_proc_mem_bytes >> 20} MiB: replacing it gracefully")
    return None
