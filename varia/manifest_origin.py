"""Whose a job directory's manifest is: the terminated run's own, or an earlier run's.

A reset starts a new run of the chain in the same job directory, where the run it was reset
from may have left its manifest. Terminated, the new run still needs its own (the janitor's);
that manifest is not it. A manifest names the run it was written for (`run_id`); one of older
varia does not, and is dated by its file instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from varia import jobdir
from varia.names import MANIFEST_NAME


@dataclass(frozen=True)
class ManifestOrigin:
    """Whose a job directory's manifest is, as far as the file tells."""

    run_id: str | None  # the run it was written for (None: older varia, or not readable)
    written: datetime  # its modification time


def manifest_origin(job_dir: Path) -> ManifestOrigin | None:
    """The origin of the manifest in `job_dir`; None if there is none."""
    try:
        written = os.lstat(job_dir / MANIFEST_NAME).st_mtime
    except FileNotFoundError:
        return None
    manifest = jobdir.earlier_manifest(job_dir)
    run_id = manifest.run_id if manifest is not None else None
    return ManifestOrigin(run_id, datetime.fromtimestamp(written, UTC))


def written_earlier(
    origin: ManifestOrigin, run_id: str, run_started: datetime, origin_started: datetime | None
) -> bool:
    """Whether the manifest was written for a run of the chain before run `run_id` (started at
    `run_started`), so that run, reset after it ended, still needs a manifest of its own.

    A manifest naming the run is its own (its cleanup's, or a sweep's). One naming another run
    is earlier if that run started first (`origin_started`, by the server's clock; None: the
    server no longer knows the run, so it closed, and started, before this one). One of older
    varia names no run: it is earlier if it was written before the run started. Anything else
    was written during or after the run: its own, or a later run's that supersedes it.
    """
    if origin.run_id == run_id:
        return False
    if origin.run_id is not None:
        return origin_started is None or origin_started < run_started
    return origin.written < run_started
