"""A `varia worker` whose prepare, record or cleanup stops half-way and waits to be killed.

`python -m tests.reliability.gated_worker <step> <gate file>` (settings from the environment):
the step's work, run in a thread, does part of its I/O, writes the gate file and blocks until
the test SIGKILLs the process. Its activity keeps heartbeating meanwhile, as a live worker's
does; only the kill stops it.
- `prepare`: creates the job dir and probes the first input; blocks before the second.
- `record`: appends the first half of the ledger's bytes (a torn line); blocks.
- `cleanup`: sweeps the job dir (deletes what is not kept); blocks before the manifest.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from varia import ledger, media, sheet
from varia.config import Settings
from varia.models import RenderResult
from varia.names import LEDGER_NAME
from varia.worker import run_worker


def _hold(gate: Path, what: str) -> None:
    gate.write_text(what)
    threading.Event().wait()  # until SIGKILL


def _gate(step: str, gate: Path) -> None:
    """Patch the function the step's activity runs in a thread."""
    if step == "prepare":
        probe, probed = media.probe, list[str]()

        def held_probe(path: str, *args: Any) -> Any:
            if probed:
                _hold(gate, path)
            probed.append(path)
            return probe(path, *args)

        media.probe = held_probe  # type: ignore[assignment]
    elif step == "record":

        def torn_append(job_dir: Path, results: Iterable[RenderResult]) -> None:
            lines = "".join(result.model_dump_json() + "\n" for result in results).encode()
            with open(job_dir / LEDGER_NAME, "ab") as handle:
                handle.write(lines[: len(lines) // 2])
            _hold(gate, str(job_dir))

        ledger.append_ledger = torn_append
    elif step == "cleanup":
        sheet.write_sheets = lambda job_dir, *args, **kwargs: _hold(gate, str(job_dir))  # type: ignore
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    _gate(sys.argv[1], Path(sys.argv[2]))
    asyncio.run(run_worker(Settings(), exit_if_stuck=True))  # as `varia worker` runs it
