"""Metric samples in SQLite and the latency histograms they are computed from."""
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings, strategies as st

from speedysvc.monitoring.latency_histogram import (MAX_BUCKET, MIN_BUCKET, LatencyHistogram,
                                                    bucket_bounds_us, latency_bucket,
                                                    merge_buckets, percentile_from_buckets)
from speedysvc.monitoring.metrics_store import (ALL_METHODS, MethodSample, MetricsStore,
                                                WorkerSample)


def worker(ts, wid, rss=100, uss=80, cpu=10.0, calls=5, errors=0, cps=2.5, service="echo"):
    return WorkerSample(service, wid, ts, 1000 + wid, rss, uss, cpu, 1, 2, calls, errors, cps)


def method(ts, name, count, p50, p99, errors=0, service="echo"):
    p90 = None if p50 is None else (p50 + p99) / 2
    return MethodSample(service, ts, name, count, errors, p50, p90, p99)


@pytest.fixture
def store(tmp_path):
    s = MetricsStore(str(tmp_path / "logs" / "metrics.sqlite3"), retention_seconds=3600)
    yield s
    s.close()


def test_series_has_exactly_the_shape_of_the_control_api(store):
    store.add_samples([
        worker(10.0, 1, rss=100, uss=80, cpu=10.0, cps=2.0, errors=1),
        worker(10.0, 2, rss=200, uss=150, cpu=30.0, cps=3.0, errors=0),
        worker(15.0, 1, rss=110, uss=90, cpu=20.0, cps=4.0, errors=2),
        method(10.0, "echo", 10, 0.1, 0.9), method(10.0, "add", 3, 0.2, 0.5),
        method(10.0, ALL_METHODS, 13, 0.12, 0.8),
        method(15.0, "echo", 25, 0.3, 1.5, errors=1),
    ])
    s = store.series("echo")
    assert s == {
        "ts": [10.0, 15.0],
        "rss": [300, 110], "uss": [230, 90], "cpu_percent": [40.0, 20.0],
        "calls_per_s": [5.0, 4.0], "errors": [1, 2],
        "p50_ms": [0.12, 0.3],   # the service-wide row, else the slowest method
        "p99_ms": [0.8, 1.5],
        "workers": {1: {"ts": [10.0, 15.0], "rss": [100, 110], "uss": [80, 90],
                        "cpu_percent": [10.0, 20.0]},
                    2: {"ts": [10.0], "rss": [200], "uss": [150], "cpu_percent": [30.0]}},
        "methods": [{"name": "add", "count": 3, "errors": 0, "p50_ms": 0.2, "p99_ms": 0.5},
                    {"name": "echo", "count": 25, "errors": 1, "p50_ms": 0.3, "p99_ms": 1.5}],
    }


def test_an_unknown_service_has_empty_series(store):
    assert store.series("nobody") == {
        "ts": [], "rss": [], "uss": [], "cpu_percent": [], "calls_per_s": [], "errors": [],
        "p50_ms": [], "p99_ms": [], "workers": {}, "methods": []}


def test_since_and_until_select_a_window(store):
    store.add_samples([worker(float(t), 1, rss=t) for t in range(10)])
    store.add_samples([worker(5.0, 1, service="other")])
    assert store.series("echo", since=3, until=5)["rss"] == [3, 4, 5]
    assert store.series("echo", since=8)["ts"] == [8.0, 9.0]
    assert store.series("echo", until=1)["ts"] == [0.0, 1.0]
    assert store.services() == ["echo", "other"]


def test_latencies_without_calls_are_none(store):
    store.add_samples([worker(1.0, 1), method(1.0, "idle", 0, None, None)])
    s = store.series("echo")
    assert s["p50_ms"] == [None] and s["methods"][0]["p99_ms"] is None


def test_prune_drops_samples_older_than_the_retention(store):
    store.add_samples([worker(t, 1) for t in (100.0, 2000.0, 5000.0)]
                      + [method(100.0, "echo", 1, 0.1, 0.2), method(5000.0, "echo", 2, 0.1, 0.2)])
    assert store.prune(now=5100.0) == 2  # cutoff 1500: a worker sample and a method row
    assert store.series("echo")["ts"] == [2000.0, 5000.0]
    assert store.prune(now=5100.0, retention_seconds=10) == 3
    assert store.series("echo")["ts"] == []


def test_samples_survive_reopening_and_the_file_uses_wal(tmp_path):
    path = str(tmp_path / "metrics.sqlite3")
    with MetricsStore(path, 60) as s:
        s.add_samples([worker(1.0, 1)])
    with MetricsStore(path, 60) as s:
        assert s.series("echo")["ts"] == [1.0]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_only_sample_rows_are_accepted(store):
    with pytest.raises(TypeError, match="WorkerSample or MethodSample"):
        store.add_samples([worker(1.0, 1), {"ts": 1}])
    assert store.series("echo")["ts"] == []  # nothing of a rejected batch is stored


WRITER = textwrap.dedent("""
    import sys
    from speedysvc.monitoring.metrics_store import MetricsStore, WorkerSample
    store = MetricsStore(sys.argv[1], 10**9)
    for t in range(300):
        store.add_samples([WorkerSample("echo", w, float(t), w, t, t, 1.0, 0, 0, 1, 0, 1.0)
                           for w in range(4)])
    store.close()
""")


def test_a_reader_in_this_process_while_another_process_writes(tmp_path):
    path = str(tmp_path / "metrics.sqlite3")
    reader = MetricsStore(path, 10**9)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], env=env)
    try:
        seen = []
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            s = reader.series("echo")
            # a reader never sees half a batch: every timestamp has all four workers
            assert all(rss == 4 * t for t, rss in zip(s["ts"], s["rss"], strict=True))
            seen.append(len(s["ts"]))
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen == sorted(seen)
    final = reader.series("echo")
    assert len(final["ts"]) == 300 and len(final["workers"]) == 4
    reader.close()


# ------------------------------------------------------------------ latency histograms


def test_bucket_zero_starts_at_one_microsecond():
    assert latency_bucket(1000) == 0
    assert latency_bucket(999) == -1
    assert latency_bucket(2000) == 4  # four buckets per doubling
    assert latency_bucket(1_000_000) == 39  # 1 ms = 2**9.97 µs
    assert latency_bucket(0) == latency_bucket(-5) == MIN_BUCKET
    assert latency_bucket(1e30) == MAX_BUCKET


@settings(database=None)
@given(st.floats(min_value=1.0, max_value=1e15))
def test_a_latency_lies_within_its_bucket(ns):
    i = latency_bucket(ns)
    lo, hi = bucket_bounds_us(i)
    assert lo * 1000 <= ns < hi * 1000 or i in (MIN_BUCKET, MAX_BUCKET)


def test_percentiles_of_simple_histograms():
    assert percentile_from_buckets({}, 0.5) is None
    assert percentile_from_buckets({3: 0}, 0.5) is None
    lo, hi = bucket_bounds_us(40)
    assert percentile_from_buckets({40: 10}, 0) == pytest.approx(lo / 1000)
    assert percentile_from_buckets({40: 10}, 1) == pytest.approx(hi / 1000)
    assert lo / 1000 < percentile_from_buckets({40: 10}, 0.5) < hi / 1000
    # 90 fast calls and 10 slow ones: p50 is fast, p99 is slow
    h = {latency_bucket(5_000): 90, latency_bucket(50_000_000): 10}
    assert percentile_from_buckets(h, 0.5) < 0.006 and percentile_from_buckets(h, 0.99) > 45
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile_from_buckets(h, 99)


@settings(database=None)
@given(st.lists(st.integers(min_value=100, max_value=10**11), min_size=1, max_size=300),
       st.floats(min_value=0, max_value=1))
def test_percentiles_are_within_one_bucket_of_the_truth(latencies_ns, q):
    h = LatencyHistogram()
    for ns in latencies_ns:
        h.record(ns)
    ordered = sorted(latencies_ns)
    truth_ms = ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1e6
    estimate = h.percentile_ms(q)
    ratio = 2 ** (1 / 4)
    assert truth_ms / ratio <= estimate <= truth_ms * ratio
    assert h.count == len(latencies_ns)


def test_histograms_of_several_workers_add_up():
    a, b = LatencyHistogram(), LatencyHistogram()
    for ns in (1_000, 2_000, 2_000):
        a.record(ns)
    b.record(2_000)
    assert merge_buckets([a.buckets, b.buckets, {"4": 1}]) == {0: 1, 4: 4}
