"""The combined table of every benchmark's latest figures (JSON and Markdown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report import Context


def _load(results: Path) -> list[dict[str, Any]]:
    documents = []
    for path in sorted(results.glob("*.json")):
        if path.name == "summary.json":
            continue
        documents.append(json.loads(path.read_text()))
    return documents


def markdown(documents: list[dict[str, Any]]) -> str:
    """A Markdown table of every row, grouped by benchmark, with each chart linked."""
    lines = ["| benchmark | figure | measured | target | |", "|---|---|---|---|---|"]
    for doc in documents:
        for i, row in enumerate(doc["rows"]):
            verdict = {True: "met", False: "**missed**", None: ""}[row["ok"]]
            label = f"[{doc['name']}](benchmarks/results/{doc['name']}.png)" if i == 0 else ""
            lines.append(
                f"| {label} | {row['figure']} | {row['value']} | {row['target']} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def write_summary(ctx: Context, duration_s: float) -> None:
    """Write `summary.json` and `summary.md` from every report in the results directory."""
    documents = _load(ctx.results_dir)
    commands = sorted({doc["command"] for doc in documents}) or [ctx.command]
    summary = {
        "command": " ; ".join(commands),
        "last_run_s": round(duration_s, 1),
        "benchmarks": {
            doc["name"]: {
                "finished_at": doc["finished_at"],
                "load": doc["load"],
                "rows": doc["rows"],
            }
            for doc in documents
        },
    }
    (ctx.results_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (ctx.results_dir / "summary.md").write_text(markdown(documents))
