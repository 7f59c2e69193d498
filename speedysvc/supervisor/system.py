"""The few OS facts supervision decisions depend on (clocks, a process's memory, the machine's
CPU), behind one small facade so that tests can substitute a fake and drive time by hand.

Starting and stopping processes is the WorkerPool's job; a ServicePool is given a factory for
it, which tests replace in the same way.
"""
from __future__ import annotations

import time
from typing import Optional

import psutil


class System:
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timers, back-off, cool-downs)."""
        return time.monotonic()

    def time_ns(self) -> int:
        """Wall-clock nanoseconds: the clock workers stamp their heartbeats with."""
        return time.time_ns()

    def time(self) -> float:
        return time.time()

    def rss(self, pid: int) -> Optional[int]:
        """Resident memory of a process in bytes; None when it is gone."""
        try:
            rss: int = psutil.Process(pid).memory_info().rss
            return rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def machine_cpu(self) -> float:
        """The machine's CPU use (0..1) since the previous call."""
        return float(psutil.cpu_percent(None)) / 100.0
