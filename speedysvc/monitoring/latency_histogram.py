"""Call-latency histograms with log-scale buckets: bucket i covers [2**(i/4), 2**((i+1)/4)) µs.

Four buckets per doubling bound the error of any percentile to about 19%, with a few dozen
integers per method, so workers can export them cheaply and the collector can add them up.
Buckets below 1 µs are negative; latencies are clamped to [MIN_BUCKET, MAX_BUCKET].
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, Mapping

BUCKETS_PER_DOUBLING = 4
MIN_BUCKET = -40   # 2**-10 µs, about 1 ns
MAX_BUCKET = 160   # 2**40 µs, about 12 days


def bucket_bounds_us(i: int) -> tuple[float, float]:
    return 2 ** (i / BUCKETS_PER_DOUBLING), 2 ** ((i + 1) / BUCKETS_PER_DOUBLING)


# Lower bounds in ns of buckets MIN_BUCKET+1 .. MAX_BUCKET: a bisect is cheaper than log2 on the
# call path, and exact at the boundaries.
LOWER_NS = [1000 * 2 ** (i / BUCKETS_PER_DOUBLING) for i in range(MIN_BUCKET + 1, MAX_BUCKET + 1)]


def latency_bucket(ns: int | float) -> int:
    """The bucket of a latency given in nanoseconds."""
    return MIN_BUCKET + bisect_right(LOWER_NS, ns)


def percentile_from_buckets(buckets: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) in milliseconds, interpolated log-linearly inside its bucket;
    None when there are no samples."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be between 0 and 1 (0.99 for p99), got {q}")
    items = sorted((i, n) for i, n in buckets.items() if n > 0)
    total = sum(n for _, n in items)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in items:
        if seen + n >= rank:
            lo, hi = bucket_bounds_us(i)
            within = (rank - seen) / n
            ms: float = lo * (hi / lo) ** within / 1000  # float ** float is typed Any
            return ms
        seen += n
    lo, hi = bucket_bounds_us(items[-1][0])  # q == 1 with float rounding
    return hi / 1000


def merge_buckets(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Sum histograms, e.g. of one method across workers."""
    total: dict[int, int] = {}
    for h in histograms:
        for i, n in h.items():
            total[int(i)] = total.get(int(i), 0) + n
    return total


class LatencyHistogram:
    """A histogram a worker fills as it serves calls."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def record(self, ns: int | float) -> None:
        i = latency_bucket(ns)
        self.buckets[i] = self.buckets.get(i, 0) + 1
        self.count += 1

    def percentile_ms(self, q: float) -> float | None:
        return percentile_from_buckets(self.buckets, q)
