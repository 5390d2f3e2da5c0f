"""What each benchmark may take on a quiet 2-core box, per profile, in the order they run.

`make bench` must finish under 30 minutes and `make bench-quick` under 5 (issue 14); the
budgets below plan for about 25 and 4, leaving the rest as margin. A benchmark added here with a
budget that breaks a limit fails `make test` (tests/test_bench_budget.py); `python -m
benchmarks` prints each one's measured time beside its budget, so a budget can be kept honest.
"""

from __future__ import annotations

from typing import NamedTuple


class Budget(NamedTuple):
    """Expected wall seconds on a quiet 2-core box: the full profile, the quick one."""

    full_s: int
    quick_s: int


LIMITS = Budget(full_s=30 * 60, quick_s=5 * 60)

BUDGETS: dict[str, Budget] = {
    "overhead": Budget(40, 20),
    "independent": Budget(480, 45),
    "cancel": Budget(165, 30),
    "busy_cancel": Budget(20, 8),
    "start": Budget(12, 6),
    "throughput": Budget(165, 20),
    "scale": Budget(615, 45),
    "validation": Budget(15, 6),
    "nice": Budget(60, 20),
    "fairness": Budget(60, 30),
    "cli": Budget(25, 10),
    "quality": Budget(100, 20),
}


def total_s(quick: bool) -> int:
    """The sum of the budgets of one profile."""
    return sum(b.quick_s if quick else b.full_s for b in BUDGETS.values())
