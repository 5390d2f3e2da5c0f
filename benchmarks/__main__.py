"""`python -m benchmarks [--quick] [--only NAME,…]`: run the benchmarks, print, save, chart."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import resource
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import cast

from rich.table import Table

from benchmarks.budget import BUDGETS, LIMITS
from benchmarks.report import (
    RESULTS_DIR,
    Context,
    LoadMonitor,
    Report,
    console,
    load,
    print_table,
    save,
)
from benchmarks.summary import write_summary

BENCHMARKS = list(BUDGETS)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short profile (< 5 min)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="where to write JSON and PNG files"
    )
    parser.add_argument(
        "--charts-only", action="store_true", help="redraw the PNGs from the saved JSON files"
    )
    return parser.parse_args(argv)


async def _run_one(module: ModuleType, ctx: Context) -> Report:
    runner = cast(Callable[[Context], Awaitable[Report]], module.run)
    started = time.monotonic()
    with LoadMonitor() as load:
        report = await runner(ctx)
    path = save(report, ctx, started=started, load=load.summary())
    module.chart(report, path.with_suffix(".png"))
    print_table(report, ctx.command)
    busy = load.summary()
    console.print(
        f"  load: other processes used {busy['foreign_cpu_mean_pct']}% of a core on average "
        f"(peak {busy['foreign_cpu_max_pct']}%); took {time.monotonic() - started:.0f} s; "
        f"wrote {path.name} and {path.with_suffix('.png').name}\n"
    )
    return report


def _cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (servers, workers and, through
    them, FFmpeg): each benchmark stops what it started, so the difference is its own."""
    me, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _print_times(spent: dict[str, tuple[float, float]], quick: bool) -> None:
    """Each benchmark's wall and CPU time beside its budget, and the totals."""
    table = Table(title=f"time per benchmark ({'quick' if quick else 'full'} profile)")
    for column in ("benchmark", "wall, s", "CPU, s", "budget, s"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    budgets = {name: BUDGETS[name].quick_s if quick else BUDGETS[name].full_s for name in spent}
    for name, (wall, cpu) in spent.items():
        over = "[red]" if wall > budgets[name] else ""
        table.add_row(name, f"{over}{wall:.0f}", f"{cpu:.0f}", str(budgets[name]))
    limit = LIMITS.quick_s if quick else LIMITS.full_s
    table.add_row(
        "total",
        f"{sum(w for w, _ in spent.values()):.0f}",
        f"{sum(c for _, c in spent.values()):.0f}",
        f"{sum(budgets.values())} (limit {limit})",
    )
    console.print(table)


async def _main(args: argparse.Namespace) -> int:
    names = [n for n in args.only.split(",") if n] or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        console.print(f"unknown benchmark(s): {', '.join(unknown)}")
        return 2
    results = args.results or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    command = shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]])
    ctx = Context(quick=args.quick, command=command, results_dir=results)
    if args.charts_only:
        for name in names:
            path = results / f"{name}.json"
            if path.exists():
                importlib.import_module(f"benchmarks.{name}").chart(
                    load(path), path.with_suffix(".png")
                )
        write_summary(ctx, 0.0)
        return 0
    started, failed, spent = time.monotonic(), [], {}
    for name in names:
        console.rule(f"[bold]{name}")
        began, cpu = time.monotonic(), _cpu_s()
        try:
            await _run_one(importlib.import_module(f"benchmarks.{name}"), ctx)
        except Exception:
            failed.append(name)
            console.print(traceback.format_exc())
        spent[name] = (time.monotonic() - began, _cpu_s() - cpu)
    write_summary(ctx, time.monotonic() - started)
    _print_times(spent, ctx.quick)
    console.print(f"all done in {time.monotonic() - started:.0f} s; results in {results}")
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/]")
    return 1 if failed else 0


def main() -> None:
    """Entry point."""
    try:
        sys.exit(asyncio.run(_main(_parse(sys.argv[1:]))))
    except KeyboardInterrupt:
        console.print("interrupted: everything the benchmarks started was stopped")
        sys.exit(130)


if __name__ == "__main__":
    main()
