"""Metric samples in one SQLite file (WAL), written by the supervisor's collector and read by the
control API, possibly from another process.

`series()` returns exactly the shape of the control API's `metrics()` (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import astuple, dataclass, fields
from typing import Any, Iterable

ALL_METHODS = "*"  # a MethodSample under this name carries the service-wide percentiles


@dataclass(frozen=True)
class WorkerSample:
    """One worker at one sampling time. calls and errors count the sampling interval."""
    service: str
    worker_id: int
    ts: float
    pid: int
    rss: int
    uss: int
    cpu_percent: float
    io_read_bytes: int
    io_write_bytes: int
    calls: int
    errors: int
    calls_per_s: float


@dataclass(frozen=True)
class MethodSample:
    """One method of a service at one sampling time, from the workers' merged histograms.
    count and errors are totals since the pool started; percentiles are None without calls."""
    service: str
    ts: float
    method: str
    count: int
    errors: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


_TABLES = {WorkerSample: "worker_samples", MethodSample: "method_samples"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS worker_samples (
    service TEXT NOT NULL, worker_id INTEGER NOT NULL, ts REAL NOT NULL, pid INTEGER,
    rss INTEGER, uss INTEGER, cpu_percent REAL, io_read_bytes INTEGER, io_write_bytes INTEGER,
    calls INTEGER, errors INTEGER, calls_per_s REAL);
CREATE INDEX IF NOT EXISTS worker_samples_by_time ON worker_samples (service, ts);
CREATE TABLE IF NOT EXISTS method_samples (
    service TEXT NOT NULL, ts REAL NOT NULL, method TEXT NOT NULL, count INTEGER, errors INTEGER,
    p50_ms REAL, p90_ms REAL, p99_ms REAL);
CREATE INDEX IF NOT EXISTS method_samples_by_time ON method_samples (service, ts);
"""


def _insert_sql(cls: type) -> str:
    names = [f.name for f in fields(cls)]
    return (f"INSERT INTO {_TABLES[cls]} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))})")


class MetricsStore:
    def __init__(self, path: str | os.PathLike[str], retention_seconds: float):
        self.path = os.fspath(path)
        self.retention_seconds = retention_seconds
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # One connection shared by the collector and control threads, serialised by a lock;
        # other processes open their own and WAL lets them read while this one writes.
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # losing the last samples on power loss is fine; an fsync per batch is not
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def add_samples(self, rows: Iterable[WorkerSample | MethodSample]) -> None:
        by_type: dict[type, list[tuple[Any, ...]]] = {}
        for row in rows:
            if type(row) not in _TABLES:
                raise TypeError(f"expected WorkerSample or MethodSample, got {type(row).__name__}")
            by_type.setdefault(type(row), []).append(astuple(row))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for cls, values in by_type.items():
                    self._db.executemany(_insert_sql(cls), values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def prune(self, now: float, retention_seconds: float | None = None) -> int:
        """Delete samples older than the retention window; returns how many were deleted."""
        cutoff = now - (self.retention_seconds if retention_seconds is None else retention_seconds)
        with self._lock:
            deleted = sum(self._db.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,)).rowcount
                          for table in _TABLES.values())
        return deleted

    def services(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT service FROM worker_samples ORDER BY service")
            return [r[0] for r in rows]

    def series(self, service: str, since: float | None = None,
               until: float | None = None) -> dict[str, Any]:
        """Time series of one service between since and until (inclusive), oldest first."""
        where = "service = ? AND ts >= ? AND ts <= ?"
        args = (service, -1e300 if since is None else since, 1e300 if until is None else until)
        with self._lock:
            workers = self._db.execute(
                f"SELECT ts, worker_id, rss, uss, cpu_percent, calls_per_s, errors "
                f"FROM worker_samples WHERE {where} ORDER BY ts, worker_id", args).fetchall()
            methods = self._db.execute(
                f"SELECT ts, method, count, errors, p50_ms, p99_ms "
                f"FROM method_samples WHERE {where} ORDER BY ts, method", args).fetchall()
        out = _totals(workers, methods)
        out["workers"] = _per_worker(workers)
        out["methods"] = _latest_methods(methods)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "MetricsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _totals(workers: list[tuple[Any, ...]], methods: list[tuple[Any, ...]]) -> dict[str, Any]:
    keys = ("rss", "uss", "cpu_percent", "calls_per_s", "errors")
    by_ts: dict[float, list[Any]] = {}
    for ts, _wid, *values in workers:
        sums = by_ts.setdefault(ts, [0] * len(keys))
        for k, v in enumerate(values):
            sums[k] += v or 0
    latency = _service_latency(methods)
    out: dict[str, Any] = {"ts": list(by_ts)}
    for k, key in enumerate(keys):
        out[key] = [sums[k] for sums in by_ts.values()]
    out["p50_ms"] = [latency.get(ts, (None, None))[0] for ts in by_ts]
    out["p99_ms"] = [latency.get(ts, (None, None))[1] for ts in by_ts]
    return out


def _service_latency(methods: list[tuple[Any, ...]]) -> dict[float, tuple[Any, ...]]:
    """Service-wide (p50, p99) per timestamp: the ALL_METHODS row where the collector wrote one,
    else the slowest method's (percentiles of different methods cannot be combined exactly)."""
    exact: dict[float, tuple[Any, ...]] = {}
    slowest: dict[float, tuple[Any, ...]] = {}
    for ts, method, _count, _errors, p50, p99 in methods:
        if method == ALL_METHODS:
            exact[ts] = (p50, p99)
        elif p99 is not None and (ts not in slowest or p99 > slowest[ts][1]):
            slowest[ts] = (p50, p99)
    return {**slowest, **exact}


def _per_worker(workers: list[tuple[Any, ...]]) -> dict[int, dict[str, list[Any]]]:
    out: dict[int, dict[str, list[Any]]] = {}
    for ts, wid, rss, uss, cpu, _cps, _errors in workers:
        w = out.setdefault(wid, {"ts": [], "rss": [], "uss": [], "cpu_percent": []})
        w["ts"].append(ts)
        w["rss"].append(rss)
        w["uss"].append(uss)
        w["cpu_percent"].append(cpu)
    return out


def _latest_methods(methods: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    latest: dict[str, tuple[Any, ...]] = {}
    for _ts, method, count, errors, p50, p99 in methods:  # ordered by ts, so the last one wins
        if method != ALL_METHODS:
            latest[method] = (count, errors, p50, p99)
    return [{"name": name, "count": count, "errors": errors, "p50_ms": p50, "p99_ms": p99}
            for name, (count, errors, p50, p99) in sorted(latest.items())]
