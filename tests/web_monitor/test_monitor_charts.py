"""Figures built from stored metrics: windows, downsampling, empty data."""
from __future__ import annotations

import pytest
from monitor_fakes import FakeControl

from web_monitor.charts import (MAX_POINTS, downsample, service_figures, sparkline, window_bounds)


def test_window_bounds():
    assert window_bounds("5m", now=1000.0) == (700.0, None)
    assert window_bounds("24h", now=100000.0) == (100000.0 - 86400, None)
    assert window_bounds("all") == (None, None)
    with pytest.raises(ValueError, match="window must be one of 5m, 1h, 24h, all"):
        window_bounds("7d")


def test_downsample_keeps_short_series_and_averages_long_ones():
    ts, out = downsample([1, 2, 3], {"v": [1, None, 3]}, 10)
    assert ts == [1, 2, 3] and out["v"] == [1, None, 3]
    ts, out = downsample(list(range(100)), {"v": list(range(100)), "peak": [0] * 99 + [50]}, 10,
                         peak=["peak"])
    assert len(ts) == 10 and ts[-1] == 99
    assert out["v"][0] == pytest.approx(4.5)   # mean of 0..9
    assert out["peak"][-1] == 50               # the spike survives


def test_service_figures_have_totals_and_per_worker_traces():
    metrics = FakeControl(history_s=7200).metrics("echo")
    figures = service_figures(metrics, "all")
    names = [trace.name for trace in figures["memory"].data]
    assert names[:2] == ["total RSS", "total USS"]
    assert "worker 0 RSS" in names and "worker 1 USS" in names
    assert len(figures["memory"].data[0].x) <= MAX_POINTS
    assert [t.name for t in figures["latency"].data] == ["p50", "p99"]
    assert [t.name for t in figures["calls"].data] == ["calls/s", "errors"]
    # Memory is charted in MiB.
    assert 50 < figures["memory"].data[0].y[-1] < 500


def test_service_figures_without_data_show_a_note():
    figures = service_figures({"ts": [], "workers": {}}, "1h")
    note = figures["cpu"].layout.annotations[0].text
    assert note == "No samples in the last hour yet"


def test_worker_ids_as_strings_sort_numerically():
    metrics = {"ts": [1.0], "rss": [1], "workers": {"10": {"ts": [1.0], "rss": [1]},
                                                     "2": {"ts": [1.0], "rss": [1]}}}
    names = [t.name for t in service_figures(metrics, "5m")["memory"].data]
    assert names.index("worker 2 RSS") < names.index("worker 10 RSS")


def test_sparkline_is_small_and_bare():
    fig = sparkline(FakeControl().metrics("echo"))
    assert fig.layout.height == 36 and fig.layout.xaxis.visible is False
    assert len(fig.data[0].y) <= 60


def test_gone_workers_are_marked_hidden_and_only_the_latest_few_kept():
    series = lambda t: {"ts": [t], "rss": [1.0], "uss": [1.0], "cpu_percent": [1.0]}  # noqa: E731
    metrics = {"ts": [1.0], "rss": [1], "uss": [1], "cpu_percent": [1], "calls_per_s": [0],
               "errors": [0], "p50_ms": [0], "p99_ms": [0],
               "workers": {str(w): series(float(w)) for w in range(1, 11)}}  # 10 workers seen
    figures = service_figures(metrics, "5m", live_workers={"9", "10"})
    names = [t.name for t in figures["cpu"].data]
    assert "worker 9" in names and "worker 10" in names
    gone = [t for t in figures["cpu"].data if "(gone)" in (t.name or "")]
    assert [t.name for t in gone] == ["worker 6 (gone)", "worker 7 (gone)", "worker 8 (gone)"]
    assert all(t.visible == "legendonly" for t in gone)
    assert "worker 1 (gone)" not in names
