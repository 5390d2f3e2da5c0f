"""`make bench` stays under 30 minutes and `make bench-quick` under 5 (issue 14): every benchmark
`python -m benchmarks` runs has a budget, and each profile's budgets sum under its limit."""

from __future__ import annotations

import importlib

import pytest

from benchmarks.__main__ import BENCHMARKS
from benchmarks.budget import BUDGETS, LIMITS, total_s


def test_every_benchmark_run_has_a_budget_and_a_module() -> None:
    assert list(BUDGETS) == BENCHMARKS
    for name in BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.run) and callable(module.chart), name


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_the_budgets_sum_under_the_profile_limit(quick: bool) -> None:
    limit = LIMITS.quick_s if quick else LIMITS.full_s
    assert all(min(budget) > 0 for budget in BUDGETS.values())
    assert total_s(quick) < limit, f"{total_s(quick)} s budgeted, limit {limit} s"
