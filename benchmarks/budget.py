"""What each benchmark may take on a quiet 2-core box, per profile, in the order they run.

`make bench` must finish under 30 minutes and `make bench-quick` under 5 (issue 14); the
budgets below sum to about 29 and 4.8: the 10,000-variation job, the independent method's 3
rounds and 40 cancels, which issue 14 pins, are 21 of the 29. A benchmark added here with a
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
    "overhead": Budget(35, 30),
    "independent": Budget(540, 35),
    "cancel": Budget(165, 28),
    "busy_cancel": Budget(20, 12),
    "start": Budget(12, 6),
    "throughput": Budget(120, 15),
    "scale": Budget(480, 60),
    "validation": Budget(20, 6),
    "nice": Budget(40, 15),
    "fairness": Budget(25, 20),
    "cli": Budget(40, 17),
    "quality": Budget(85, 30),
    "rpc_cost": Budget(85, 10),
    "memory": Budget(130, 15),
}
"""The full profile from the quiet run of 2026-11-30 before render-ahead (1,822 s in all); the
quiet run after it took 1,317 s (scale 388 s, independent 426 s: both well inside); the quick
profile estimated from CPU seconds on a loaded box (whose wall times were 3-8 times these).
Rebalanced after the slower full run at 2eb63d5 (1,692 s): independent 573 s and throughput
150 s there, scale 455 s and fairness 18 s; and again for `memory` (123 s) from the run at
ca712cd (overhead 29 s, throughput 108 s, nice 39 s, cli 39 s) and a slow hour's independent
(549 s)."""


def total_s(quick: bool) -> int:
    """The sum of the budgets of one profile."""
    return sum(b.quick_s if quick else b.full_s for b in BUDGETS.values())
