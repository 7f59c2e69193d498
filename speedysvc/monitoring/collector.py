"""The metrics collector: turns snapshots of a service's worker table into stored samples.

The supervisor's main loop takes a snapshot every metrics_interval (pids, call and error
counters, per-method latency histograms: cheap reads of shared memory) and hands it over;
this component's own thread adds what the OS knows about each process (RSS, USS, CPU, I/O
through psutil), turns counters into rates and interval percentiles, and writes them to the
MetricsStore (SQLite). Workers do nothing for it beyond keeping their counters.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import psutil

from .latency_histogram import merge_buckets, percentile_from_buckets
from .metrics_store import ALL_METHODS, MethodSample, MetricsStore, WorkerSample

log = logging.getLogger("speedysvc.collector")

PRUNE_EVERY_S = 60.0


@dataclass
class WorkerReading:
    worker_id: int
    pid: int
    calls: int
    errors: int
    stats: dict[str, Any] = field(default_factory=dict)   # {method: [count, errors, {bucket: n}]}
    # {rss, uss, cpu_percent} as the worker measured itself (a Ray replica on another node,
    # whose pid means nothing here); None: the collector asks the OS about `pid`
    os_reading: Optional[dict[str, Any]] = None


@dataclass
class ServiceSnapshot:
    service: str
    ts: float
    workers: list[WorkerReading]
    retention: float = 86400.0


# retention values of the snapshots that are messages to the collector thread, not samples
_FORGET, _STOPPED = -1.0, -2.0


@dataclass
class _WorkerState:
    ts: float
    calls: int
    errors: int
    io_read: int
    io_write: int
    stats: dict[str, Any]
    pid: int = 0


@dataclass
class _ServiceState:
    workers: dict[int, _WorkerState] = field(default_factory=dict)
    retired_methods: dict[str, list[Any]] = field(default_factory=dict)  # method -> [count, errors, buckets]
    retired_errors: int = 0
    retired_calls: int = 0


def _bucket_delta(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    out = {}
    for b, n in now.items():
        d = n - before.get(b, 0)
        if d > 0:
            out[int(b)] = d
    return out


class Collector:
    def __init__(self, store: MetricsStore):
        self.store = store
        self.latest: dict[str, dict[int, dict[str, Any]]] = {}   # service -> worker_id -> last sample
        self.totals: dict[str, dict[str, Any]] = {}              # service -> {calls_per_s, errors, calls}
        self._services: dict[str, _ServiceState] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._pids: dict[str, set[int]] = {}
        self._queue: "queue.SimpleQueue[Optional[ServiceSnapshot]]" = queue.SimpleQueue()
        self._next_prune = 0.0
        self._retention = 0.0
        self._thread = threading.Thread(target=self._run, name="speedysvc-collector", daemon=True)
        self._thread.start()

    def submit(self, snapshot: ServiceSnapshot) -> None:
        self._queue.put(snapshot)

    def forget(self, service: str) -> None:
        """The service is gone from the configuration: drop its counters."""
        self._queue.put(ServiceSnapshot(service, time.time(), [], _FORGET))

    def stopped(self, service: str) -> None:
        """The service stopped: its workers' counts stay in its totals (errors and calls count
        since the supervisor started, across restarts of the service)."""
        self._queue.put(ServiceSnapshot(service, time.time(), [], _STOPPED))

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            snapshot = self._queue.get()
            if snapshot is None:
                return
            try:
                if snapshot.retention == _FORGET:
                    self._services.pop(snapshot.service, None)
                    self.latest.pop(snapshot.service, None)
                    self.totals.pop(snapshot.service, None)
                    continue
                if snapshot.retention == _STOPPED:
                    self._retire_all(snapshot.service)
                    continue
                self.collect(snapshot)
            except Exception:  # noqa: BLE001 - a full disk must not stop the collector
                log.exception("could not store the metrics of %s", snapshot.service)

    def _retire_all(self, service: str) -> None:
        state = self._services.get(service)
        if state is None:
            return
        for wid in list(state.workers):
            self._retire(state, wid)
        self.latest.pop(service, None)
        if service in self.totals:
            self.totals[service] = {**self.totals[service], "calls_per_s": 0.0,
                                    "errors": state.retired_errors, "calls": state.retired_calls}

    @staticmethod
    def _retire(state: "_ServiceState", wid: int) -> None:
        """A worker exited: keep its counts in the service totals."""
        gone = state.workers.pop(wid)
        state.retired_calls += gone.calls
        state.retired_errors += gone.errors
        for method, (count, errors, buckets) in gone.stats.items():
            acc = state.retired_methods.setdefault(method, [0, 0, {}])
            acc[0] += count
            acc[1] += errors
            acc[2] = merge_buckets([acc[2], buckets])

    def collect(self, snap: ServiceSnapshot) -> None:
        """Sample the OS for the snapshot's processes and store one row per worker and method."""
        state = self._services.setdefault(snap.service, _ServiceState())
        rows: list[Any] = []
        latest: dict[int, dict[str, Any]] = {}
        # a worker is its id *and* its process: after a stop and start, worker 1 is a new process
        # whose counters begin at 0, and the old one's counts must not be lost
        current = {(w.worker_id, w.pid) for w in snap.workers}
        for wid in list(state.workers):
            if (wid, state.workers[wid].pid) not in current:
                self._retire(state, wid)
        deltas: dict[str, list[Any]] = {}
        calls_per_s_total = 0.0
        for w in snap.workers:
            proc = self._process(w.pid) if w.os_reading is None else None
            rss = uss = io_read = io_write = 0
            cpu = 0.0
            if w.os_reading is not None:
                rss, uss = w.os_reading.get("rss", 0), w.os_reading.get("uss", 0)
                cpu = w.os_reading.get("cpu_percent", 0.0)
            if proc is not None:
                try:
                    with proc.oneshot():
                        mem = proc.memory_full_info()
                        rss, uss = mem.rss, getattr(mem, "uss", 0)
                        cpu = proc.cpu_percent(None)
                        try:
                            io = proc.io_counters()
                            io_read, io_write = io.read_bytes, io.write_bytes
                        except (AttributeError, psutil.AccessDenied):
                            pass
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    self._procs.pop(w.pid, None)
            before = state.workers.get(w.worker_id)
            dt = snap.ts - before.ts if before else 0.0
            d_calls = w.calls - before.calls if before else w.calls
            d_errors = w.errors - before.errors if before else w.errors
            rate = d_calls / dt if dt > 0 else 0.0
            calls_per_s_total += rate
            rows.append(WorkerSample(snap.service, w.worker_id, snap.ts, w.pid, rss, uss, cpu,
                                     max(0, io_read - before.io_read) if before else 0,
                                     max(0, io_write - before.io_write) if before else 0,
                                     max(0, d_calls), max(0, d_errors), rate))
            latest[w.worker_id] = {"rss": rss, "uss": uss, "cpu_percent": cpu, "calls_per_s": rate}
            for method, (_count, _errors, buckets) in w.stats.items():
                prev: list[Any] = before.stats.get(method, [0, 0, {}]) if before else [0, 0, {}]
                deltas.setdefault(method, []).append(_bucket_delta(buckets, prev[2]))
            state.workers[w.worker_id] = _WorkerState(snap.ts, w.calls, w.errors, io_read, io_write,
                                                      w.stats, w.pid)
        rows.extend(self._method_rows(snap, state, deltas))
        pids = {w.pid for w in snap.workers}
        for pid in self._pids.get(snap.service, set()) - pids:
            self._procs.pop(pid, None)
        self._pids[snap.service] = pids
        self.latest[snap.service] = latest
        self.totals[snap.service] = {
            "calls_per_s": calls_per_s_total,
            "errors": state.retired_errors + sum(w.errors for w in state.workers.values()),
            "calls": state.retired_calls + sum(w.calls for w in state.workers.values()),
        }
        self.store.add_samples(rows)
        self._retention = max(self._retention, snap.retention)
        if snap.ts >= self._next_prune:
            self._next_prune = snap.ts + PRUNE_EVERY_S
            self.store.prune(snap.ts, self._retention)

    def _method_rows(self, snap: ServiceSnapshot, state: _ServiceState,
                     deltas: dict[str, list[Any]]) -> list[MethodSample]:
        """Per method: totals and latency percentiles since the service started (the methods
        table); under ALL_METHODS: percentiles of this interval's calls (the latency chart)."""
        totals: dict[str, list[Any]] = {m: [v[0], v[1], [v[2]]] for m, v in state.retired_methods.items()}
        for w in state.workers.values():
            for method, (count, errors, buckets) in w.stats.items():
                acc = totals.setdefault(method, [0, 0, []])
                acc[0] += count
                acc[1] += errors
                acc[2].append(buckets)
        rows = []
        for method, (count, errors, histograms) in sorted(totals.items()):
            merged = merge_buckets(histograms)
            rows.append(MethodSample(snap.service, snap.ts, method, count, errors,
                                     percentile_from_buckets(merged, 0.5),
                                     percentile_from_buckets(merged, 0.9),
                                     percentile_from_buckets(merged, 0.99)))
        if rows:
            interval = merge_buckets(h for hs in deltas.values() for h in hs)
            rows.append(MethodSample(snap.service, snap.ts, ALL_METHODS,
                                     sum(r.count for r in rows), sum(r.errors for r in rows),
                                     percentile_from_buckets(interval, 0.5),
                                     percentile_from_buckets(interval, 0.9),
                                     percentile_from_buckets(interval, 0.99)))
        return rows

    def _process(self, pid: int) -> Optional[psutil.Process]:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)  # the first reading only sets the baseline
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
        return proc
