"""Reporting: figure rows, the printed table, the JSON file, the machine's load meanwhile."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import psutil
from rich.console import Console
from rich.markup import escape
from rich.table import Table

matplotlib.use("Agg")

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS_DIR = Path(__file__).parent / "results"
console = Console(width=None if sys.stdout.isatty() else 120)


@dataclass
class Row:
    """One figure: its measured value (text), the target, and whether the target was met."""

    figure: str
    value: str
    target: str = "report"
    ok: bool | None = None


@dataclass
class Report:
    """What one benchmark measured: rows for the table and raw data for JSON and chart."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    """How the benchmarks were invoked and where their results go."""

    quick: bool
    command: str
    results_dir: Path


def fmt_s(seconds: float) -> str:
    """Seconds with a sensible number of digits."""
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def mark(ok: bool | None) -> str:
    """A table cell for a target check."""
    return {True: "[green]met[/]", False: "[red]MISSED[/]", None: ""}[ok]


def print_table(report: Report, command: str) -> None:
    """Print the report's rows as a table, with the command that produced them."""
    table = Table(title=report.title, title_justify="left")
    for column in ("figure", "measured", "target", ""):
        table.add_column(column)
    for row in report.rows:
        table.add_row(escape(row.figure), escape(row.value), escape(row.target), mark(row.ok))
    console.print(table)
    for note in report.notes:
        console.print(f"  note: {note}")
    console.print(f"  command: [bold]{command}[/]")


def machine() -> dict[str, Any]:
    """The machine and software the figures were taken on."""
    import imageio_ffmpeg
    import temporalio

    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "temporalio": temporalio.__version__,
        "ffmpeg": imageio_ffmpeg.get_ffmpeg_version(),
    }


class LoadMonitor:
    """Samples the CPU used by processes that are not ours (other engineers' test suites…).

    `foreign_cpu` is in percent of one core, averaged over the samples; 200 means both cores
    of a 2-core machine were busy with someone else's work.
    """

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.top: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-monitor", daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def __enter__(self) -> LoadMonitor:
        self.load_before = os.getloadavg()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.load_after = os.getloadavg()

    def _ours(self) -> set[int]:
        me = psutil.Process()
        return {me.pid} | {child.pid for child in me.children(recursive=True)}

    def _loop(self) -> None:
        self._sample(record=False)
        while not self._stop.wait(self.interval_s):
            self._sample(record=True)

    def _sample(self, record: bool) -> None:
        ours, total = self._ours(), 0.0
        for pid in psutil.pids():
            if pid in ours:
                continue
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)
                    continue
                used = proc.cpu_percent(None)
                name = proc.name()
            except psutil.Error:
                self._procs.pop(pid, None)
                continue
            total += used
            if record and used > 5:
                self.top[name] = self.top.get(name, 0.0) + used
        if record:
            self.samples.append(total)

    def summary(self) -> dict[str, Any]:
        """Average and peak foreign CPU, the load averages, and who used the most."""
        count = max(1, len(self.samples))
        busiest = sorted(self.top.items(), key=lambda kv: -kv[1])[:5]
        return {
            "foreign_cpu_mean_pct": round(sum(self.samples) / count, 1),
            "foreign_cpu_max_pct": round(max(self.samples, default=0.0), 1),
            "foreign_busiest": {name: round(used / count, 1) for name, used in busiest},
            "loadavg_before": [round(x, 2) for x in self.load_before],
            "loadavg_after": [round(x, 2) for x in self.load_after],
        }


def save_chart(fig: Figure, path: Path, dpi: float | None = 110) -> None:
    """Lay out a benchmark's chart, write it to `path` and free it (`dpi` None: matplotlib's)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def save(report: Report, ctx: Context, *, started: float, load: dict[str, Any]) -> Path:
    """Write the report as `<results dir>/<name>.json`; return its path."""
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.results_dir / f"{report.name}.json"
    document = {
        "name": report.name,
        "title": report.title,
        "command": ctx.command,
        "profile": "quick" if ctx.quick else "full",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine(),
        "load": load,
        "rows": [asdict(row) for row in report.rows],
        "notes": report.notes,
        "data": report.data,
    }
    path.write_text(json.dumps(clean(document), indent=2) + "\n")
    return path


def load(path: Path) -> Report:
    """A report back from its JSON file (to redraw its chart)."""
    document = json.loads(path.read_text())
    return Report(
        name=document["name"],
        title=document["title"],
        rows=[Row(**row) for row in document["rows"]],
        data=_nan(document["data"]),
        notes=document["notes"],
    )


def _nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan(item) for item in value]
    return float("nan") if value is None else value


def clean(value: Any) -> Any:
    """`value` as strict JSON data: NaN becomes null, paths and tuples become str and lists."""
    if isinstance(value, dict):
        return {str(key): clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
