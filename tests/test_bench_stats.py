"""The benchmarks' statistics helpers (pure maths; the benchmarks themselves are not tests)."""

from __future__ import annotations

import math

import pytest

from benchmarks.stats import percentile, ratio, summarize


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
