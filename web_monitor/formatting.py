"""Human-readable numbers for the tables; shared by the Jinja filters and the JSON API so the
live-updated cells look exactly like the server-rendered ones."""
from __future__ import annotations

import math
import time
from typing import Any

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def format_bytes(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "–"
    unit = 0
    while abs(number) >= 1024 and unit < len(_BYTE_UNITS) - 1:
        number /= 1024
        unit += 1
    return f"{number:.0f} {_BYTE_UNITS[unit]}" if unit == 0 else f"{number:.1f} {_BYTE_UNITS[unit]}"


def format_duration(value: Any) -> str:
    seconds = _number(value)
    if seconds is None or seconds < 0:
        return "–"
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def format_percent(value: Any) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.1f} %"


def format_rate(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "–"
    return f"{number:.0f}/s" if number >= 100 else f"{number:.1f}/s"


def format_count(value: Any) -> str:
    number = _number(value)
    return "–" if number is None else f"{int(number):,}"


def format_timestamp(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(number))


def format_clock(value: Any) -> str:
    """Time of day with milliseconds, for log lines."""
    number = _number(value)
    if number is None:
        return "–"
    return time.strftime("%H:%M:%S", time.localtime(number)) + f".{int(number * 1000) % 1000:03d}"


FILTERS = {
    "bytes": format_bytes,
    "duration": format_duration,
    "percent": format_percent,
    "rate": format_rate,
    "count": format_count,
    "timestamp": format_timestamp,
    "clock": format_clock,
}
