"""Pure statistics for the benchmarks: percentiles, summaries and ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0 to 100) with linear interpolation between closest ranks.

    Matches `numpy.percentile(values, q)` (method "linear"). Raises ValueError when empty.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, min, mean, p50, p95, max of `values` (all NaN when there are none, n 0)."""
    if not values:
        nan = float("nan")
        return {"n": 0, "min": nan, "mean": nan, "p50": nan, "p95": nan, "max": nan}
    return {
        "n": len(values),
        "min": min(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
    }


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero."""
    return numerator / denominator if denominator else float("nan")


def speed_normalized(wall_s: float, cpu_s: float, base_wall_s: float, base_cpu_s: float) -> float:
    """(wall_s per CPU-second) / (base_wall_s per CPU-second): a ratio of two runs of the same
    FFmpeg work with the host's speed taken out. On this box the host slows and speeds up
    from one second to the next, and FFmpeg's CPU-seconds move with its wall time, so scaling
    one run's wall and CPU by the same factor leaves this unchanged. It assumes the CPU-seconds
    measure the same work in both runs, which a multithreaded encode under contention does not
    quite do: a cross-check of the wall-time ratio, not a replacement. NaN on a zero."""
    if not (wall_s and cpu_s and base_wall_s and base_cpu_s):
        return float("nan")
    return (wall_s / cpu_s) / (base_wall_s / base_cpu_s)


def median_interval(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """A distribution-free confidence interval of the median: `(low, high, achieved)`.

    The interval runs from the k-th smallest to the k-th largest value, with the largest k
    whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least `confidence`; `achieved` is
    that coverage. With too few values for `confidence` it is the whole range, and `achieved`
    says how sure that is (three values: 75 %). Raises ValueError when empty.
    """
    if not values:
        raise ValueError("interval of no values")
    ordered = sorted(values)
    n = len(ordered)
    k, achieved = 1, _coverage(n, 1)
    while k < (n + 1) // 2 and _coverage(n, k + 1) >= confidence:
        k += 1
        achieved = _coverage(n, k)
    return ordered[k - 1], ordered[n - k], achieved


def _coverage(n: int, k: int) -> float:
    """P(the k-th smallest <= median <= the k-th largest) for n values of any distribution."""
    below: float = sum(math.comb(n, i) for i in range(k)) / 2**n
    return 1.0 - 2.0 * below
