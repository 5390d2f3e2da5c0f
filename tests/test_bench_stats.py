"""The benchmarks' statistics helpers (pure maths; the benchmarks themselves are not tests)."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.stats import (
    _coverage,
    median_interval,
    percentile,
    ratio,
    speed_normalized,
    summarize,
)


def test_percentile_interpolates_like_numpy_linear() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)  # numpy.percentile(..., 95)
    assert percentile([7.0], 95) == 7.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    summary = summarize([0.1, 0.2, 0.3, 0.4, 1.0])
    assert summary["n"] == 5
    assert summary["p50"] == pytest.approx(0.3)
    assert summary["max"] == 1.0
    assert summary["mean"] == pytest.approx(0.4)
    empty = summarize([])
    assert empty["n"] == 0 and math.isnan(empty["p50"])


def test_ratio() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))


seconds = st.floats(0.01, 1000.0)


@given(seconds, seconds, seconds, seconds, st.floats(0.1, 10.0))
def test_speed_normalized_takes_the_hosts_speed_out(
    wall: float, cpu: float, base_wall: float, base_cpu: float, slower: float
) -> None:
    figure = speed_normalized(wall, cpu, base_wall, base_cpu)
    # a host `slower` times as slow stretches a run's wall and CPU seconds alike
    assert math.isclose(speed_normalized(wall * slower, cpu * slower, base_wall, base_cpu), figure)
    assert math.isclose(speed_normalized(wall, cpu, base_wall * slower, base_cpu * slower), figure)
    # more wall time for the same CPU (waits, idle cores) is overhead; it shows
    assert speed_normalized(wall * 1.5, cpu, base_wall, base_cpu) > figure
    assert math.isclose(speed_normalized(wall, cpu, wall, cpu), 1.0)


def test_speed_normalized_of_a_zero_is_nan() -> None:
    assert math.isnan(speed_normalized(1.0, 0.0, 1.0, 1.0))
    assert math.isnan(speed_normalized(1.0, 1.0, 0.0, 1.0))


def test_median_interval_by_order_statistics() -> None:
    nine = [1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]
    low, high, achieved = median_interval(nine)
    assert (low, high) == (2.0, 8.0)  # 2nd smallest to 2nd largest: 96.1 %
    assert achieved == pytest.approx(1 - 2 * 10 / 512)
    low, high, achieved = median_interval([3.0, 1.0, 2.0])  # too few for 95 %: the range
    assert (low, high, achieved) == (1.0, 3.0, 0.75)
    with pytest.raises(ValueError):
        median_interval([])


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]),
)
def test_median_interval_holds_the_median_at_the_asked_coverage(
    values: list[float], confidence: float
) -> None:
    low, high, achieved = median_interval(values, confidence)
    assert low <= statistics.median(values) <= high
    assert 0.0 <= achieved <= 1.0  # one value: a point, which holds the true median never
    # the narrowest interval of order statistics that reaches the coverage, else the range
    n, ordered = len(values), sorted(values)
    reaching = [k for k in range(1, (n + 1) // 2 + 1) if _coverage(n, k) >= confidence]
    k = max(reaching, default=1)
    assert (low, high, achieved) == (ordered[k - 1], ordered[n - k], _coverage(n, k))
    assert achieved >= confidence or (low, high) == (ordered[0], ordered[-1])
