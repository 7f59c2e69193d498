"""Display cells for services and workers: the template renders them once and the overview's
live refresh swaps in new ones from /api/status, so both paths show identical text."""
from __future__ import annotations

from typing import Any, Mapping

from .formatting import (format_bytes, format_count, format_duration, format_percent, format_rate,
                         format_timestamp)

# Statuses the CSS has a badge colour for; anything else is shown as "unknown".
KNOWN_STATUSES = frozenset({"running", "starting", "stopped", "stopping", "failed"})


def status_class(status: Any) -> str:
    return str(status) if status in KNOWN_STATUSES else "unknown"


def service_cells(svc: Mapping[str, Any]) -> dict[str, str]:
    return {
        "status": str(svc.get("status", "unknown")),
        "workers": f"{svc.get('current', '–')} / {svc.get('min_proc_num', '–')}–{svc.get('max_proc_num', '–')}",
        "uptime": format_duration(svc.get("uptime_s")) if svc.get("status") == "running" else "–",
        "restarts": format_count(svc.get("restarts")),
        "rss": format_bytes(svc.get("rss")),
        "uss": format_bytes(svc.get("uss")),
        "cpu": format_percent(svc.get("cpu_percent")),
        "calls": format_rate(svc.get("calls_per_s")),
        "errors": format_count(svc.get("errors")),
        "last_error": str(svc.get("last_error") or ""),
        "note": str(svc.get("note") or ""),
    }


def worker_cells(worker: Mapping[str, Any]) -> dict[str, str]:
    return {
        "worker_id": str(worker.get("worker_id", "")),
        "pid": str(worker.get("pid", "")),
        "state": str(worker.get("state", "")),
        "started": format_timestamp(worker.get("started_at")),
        "rss": format_bytes(worker.get("rss")),
        "uss": format_bytes(worker.get("uss")),
        "cpu": format_percent(worker.get("cpu_percent")),
        "calls": format_count(worker.get("calls")),
    }


def scale_bounds(svc: Mapping[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(current, min, max) as ints where known, for enabling the scale buttons."""
    def as_int(value: Any) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return as_int(svc.get("current")), as_int(svc.get("min_proc_num")), as_int(svc.get("max_proc_num"))
