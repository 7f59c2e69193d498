"""Plotly figures built from the supervisor's stored metrics (control.metrics). The browser only
hands the finished figure JSON to Plotly.react; all chart decisions live here."""
from __future__ import annotations

import json
import itertools
import math
import time
from datetime import datetime
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence

import plotly.graph_objects as go

# Selectable windows: query value -> (label, seconds back from now; None = everything retained).
WINDOWS: dict[str, tuple[str, float | None]] = {
    "5m": ("last 5 min", 300.0),
    "1h": ("last hour", 3600.0),
    "24h": ("last 24 h", 86400.0),
    "all": ("all retained", None),
}
DEFAULT_WINDOW = "5m"
# Enough points to look continuous on a wide screen while keeping 24 h of 1 s samples cheap to send.
MAX_POINTS = 600
SPARKLINE_SECONDS = 600.0
SPARKLINE_POINTS = 60
MIB = 1024 * 1024

_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d")
_LAYOUT = dict(
    template="plotly_white",
    height=280,
    margin=dict(l=55, r=10, t=34, b=40),
    # At the side: above or below the plot, a long legend (many workers) covers title or axis.
    legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02, font=dict(size=11)),
    hovermode="x unified",
    # Keeps the user's zoom and hidden traces when the live refresh replaces the data.
    uirevision="keep",
    font=dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12),
)


def window_bounds(window: str, now: float | None = None) -> tuple[float | None, float | None]:
    """(since, until) for control.metrics; raises ValueError naming the valid windows."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)} (got {window!r})")
    seconds = WINDOWS[window][1]
    if seconds is None:
        return None, None
    now = time.time() if now is None else now
    return now - seconds, None


def _clean(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def downsample(ts: Sequence[Any], series: Mapping[str, Sequence[Any]], max_points: int,
               peak: Iterable[str] = ()) -> tuple[list[float | None], dict[str, list[float | None]]]:
    """Average consecutive samples into at most `max_points` buckets. Series named in `peak`
    keep each bucket's maximum instead, so a short spike (memory, p99) stays visible."""
    peak = set(peak)
    n = len(ts)
    if n <= max_points:
        return ([_clean(t) for t in ts],
                {key: [_clean(v) for v in values[:n]] for key, values in series.items()})
    edges = [round(i * n / max_points) for i in range(max_points + 1)]
    out_ts: list[float | None] = []
    out: dict[str, list[float | None]] = {key: [] for key in series}
    for start, stop in itertools.pairwise(edges):
        if stop <= start:
            continue
        out_ts.append(_clean(ts[stop - 1]))
        for key, values in series.items():
            bucket = [v for v in (_clean(x) for x in values[start:stop]) if v is not None]
            if not bucket:
                out[key].append(None)
            elif key in peak:
                out[key].append(max(bucket))
            else:
                out[key].append(sum(bucket) / len(bucket))
    return out_ts, out


def _times(ts: Iterable[float | None]) -> list[str | None]:
    """Server-local wall-clock strings to the millisecond: plotly shows them as given, where
    numbers would be shown in UTC, and full datetimes would double the payload."""
    return [None if t is None else datetime.fromtimestamp(t).isoformat(sep=" ", timespec="milliseconds")
            for t in ts]


def _rounded(values: Iterable[float | None], factor: float = 1.0) -> list[float | None]:
    """Three decimals are finer than a chart can show and keep the JSON small."""
    return [None if v is None else round(v / factor, 3) for v in values]


def _figure(title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), **_LAYOUT)
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return fig


def _empty_note(fig: go.Figure, window: str) -> None:
    fig.add_annotation(text=f"No samples in the {WINDOWS[window][0]} yet", showarrow=False,
                       xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=13, color="#6b7280"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)


def _worker_series(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    workers = metrics.get("workers") or {}
    # msgpack may hand back worker ids as ints or strings; sort numerically when possible.
    def key(item: tuple[Any, Any]) -> tuple[int, Any]:
        wid = str(item[0])
        return (0, int(wid)) if wid.isdigit() else (1, wid)
    return [(str(wid), data) for wid, data in sorted(workers.items(), key=key)]


# Workers that have exited stay in a chart's legend (hidden until clicked) so a recycled
# worker's memory can still be looked at, but only the most recent few: a service that
# restarted a hundred workers in a day would otherwise bury its live ones.
GONE_WORKERS_SHOWN = 3


def _keep_workers(workers: list[tuple[str, Mapping[str, Any]]],
                  live: Optional[Collection[str]]) -> list[tuple[str, Mapping[str, Any], bool]]:
    """(worker id, series, gone) for the live workers and the most recently seen gone ones."""
    if live is None:
        return [(wid, data, False) for wid, data in workers]
    live = {str(w) for w in live}
    gone = [(wid, data) for wid, data in workers if wid not in live]
    gone.sort(key=lambda item: max(item[1].get("ts") or [0]), reverse=True)
    recent_gone = {wid for wid, _ in gone[:GONE_WORKERS_SHOWN]}
    return [(wid, data, wid not in live) for wid, data in workers
            if wid in live or wid in recent_gone]


def service_figures(metrics: Mapping[str, Any], window: str, max_points: int = MAX_POINTS,
                    live_workers: Optional[Collection[str]] = None) -> dict[str, go.Figure]:
    """Memory, CPU, calls/s and latency figures for one service's metrics. With
    `live_workers`, exited workers are marked "(gone)", hidden, and only the latest few kept."""
    ts, totals = downsample(
        metrics.get("ts") or [],
        {key: metrics.get(key) or [] for key in
         ("rss", "uss", "cpu_percent", "calls_per_s", "errors", "p50_ms", "p99_ms")},
        max_points, peak=("rss", "uss", "p99_ms", "errors"))
    x = _times(ts)
    workers = []
    for wid, data, gone in _keep_workers(_worker_series(metrics), live_workers):
        wts, wvalues = downsample(data.get("ts") or [],
                                  {key: data.get(key) or [] for key in ("rss", "uss", "cpu_percent")},
                                  max_points, peak=("rss", "uss"))
        workers.append((f"{wid} (gone)" if gone else wid, _times(wts), wvalues, gone))

    memory = _figure("Memory", "MiB")
    memory.add_trace(go.Scatter(x=x, y=_rounded(totals["rss"], MIB), name="total RSS",
                                line=dict(color=_COLOURS[0], width=2.5)))
    memory.add_trace(go.Scatter(x=x, y=_rounded(totals["uss"], MIB), name="total USS",
                                line=dict(color=_COLOURS[1], width=2.5)))
    for i, (wid, wx, wv, gone) in enumerate(workers):
        colour = _COLOURS[(i + 2) % len(_COLOURS)]
        memory.add_trace(go.Scatter(x=wx, y=_rounded(wv["rss"], MIB), name=f"worker {wid} RSS",
                                    line=dict(color=colour, width=1.2, dash="dot"),
                                    visible="legendonly" if gone else True))
        memory.add_trace(go.Scatter(x=wx, y=_rounded(wv["uss"], MIB), name=f"worker {wid} USS",
                                    line=dict(color=colour, width=1.2, dash="dash"),
                                    visible="legendonly"))

    cpu = _figure("CPU", "% of one core")
    cpu.add_trace(go.Scatter(x=x, y=_rounded(totals["cpu_percent"]), name="total",
                             line=dict(color=_COLOURS[0], width=2.5)))
    for i, (wid, wx, wv, gone) in enumerate(workers):
        cpu.add_trace(go.Scatter(x=wx, y=_rounded(wv["cpu_percent"]), name=f"worker {wid}",
                                 line=dict(color=_COLOURS[(i + 2) % len(_COLOURS)], width=1.2,
                                           dash="dot"),
                                 visible="legendonly" if gone else True))

    calls = _figure("Calls", "calls/s")
    calls.add_trace(go.Scatter(x=x, y=_rounded(totals["calls_per_s"]), name="calls/s",
                               line=dict(color=_COLOURS[0], width=2.5)))
    calls.add_trace(go.Bar(x=x, y=_rounded(totals["errors"]), name="errors", yaxis="y2",
                           marker=dict(color=_COLOURS[1]), opacity=0.6))
    most_errors = max((v for v in totals["errors"] if v is not None), default=0)
    calls.update_layout(yaxis2=dict(title="errors", overlaying="y", side="right", rangemode="tozero",
                                    showgrid=False, tickformat=",d",
                                    # few errors: whole-number ticks rather than 0.481
                                    dtick=1 if most_errors <= 5 else None),
                        legend=dict(x=1.1))  # clear of the right-hand axis

    latency = _figure("Latency", "ms")
    latency.add_trace(go.Scatter(x=x, y=_rounded(totals["p50_ms"]), name="p50",
                                 line=dict(color=_COLOURS[2], width=2)))
    latency.add_trace(go.Scatter(x=x, y=_rounded(totals["p99_ms"]), name="p99",
                                 line=dict(color=_COLOURS[4], width=2)))

    figures = {"memory": memory, "cpu": cpu, "calls": calls, "latency": latency}
    if not ts:
        for fig in figures.values():
            _empty_note(fig, window)
    return figures


def sparkline(metrics: Mapping[str, Any], max_points: int = SPARKLINE_POINTS) -> go.Figure:
    """A tiny, axis-free memory (RSS) line for the overview table."""
    ts, values = downsample(metrics.get("ts") or [], {"rss": metrics.get("rss") or []},
                            max_points, peak=("rss",))
    fig = go.Figure(go.Scatter(x=_times(ts), y=_rounded(values["rss"], MIB), mode="lines",
                               line=dict(color=_COLOURS[0], width=1.5), fill="tozeroy",
                               fillcolor="rgba(37, 99, 235, 0.12)",
                               hovertemplate="%{y:.1f} MiB<extra></extra>"))
    fig.update_layout(template="plotly_white", width=140, height=36, showlegend=False,
                      margin=dict(l=0, r=0, t=2, b=2), paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)",
                      xaxis=dict(visible=False), yaxis=dict(visible=False, rangemode="tozero"))
    return fig


def figure_json(fig: go.Figure) -> dict[str, Any]:
    """The figure as plain JSON data (plotly's own encoder handles datetimes and numpy)."""
    data: dict[str, Any] = json.loads(fig.to_json())
    return data


def point_count(metrics: Mapping[str, Any]) -> int:
    return len(metrics.get("ts") or [])
