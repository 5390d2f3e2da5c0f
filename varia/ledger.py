"""The ledger: completion records of a long job's earlier workflow runs, one JSON line each.

A job that continues as new appends each finished run's records here (the record activity),
and its cleanup keeps every output the ledger lists. Appends are fsynced; a crash mid-append
leaves a torn last line, which the next append cuts off and a read skips with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from varia.jobdir import open_own
from varia.models import RenderResult
from varia.names import LEDGER_NAME

log = logging.getLogger("varia.ledger")

"""The ledger's file name in the job directory."""


class LedgerCorrupt(Exception):
    """A ledger line other than a torn last one does not parse (names the file and line)."""


def append_ledger(job_dir: Path, results: Iterable[RenderResult]) -> None:
    """Append completion records to the ledger and fsync it (duplicates are fine: see read).

    A torn last line (an append that crashed midway; its activity is retried) is cut off
    first, so the new records start on a line of their own.
    """
    lines = "".join(result.model_dump_json() + "\n" for result in results).encode()
    fd = open_own(job_dir / LEDGER_NAME, os.O_RDWR | os.O_CREAT)
    try:
        _cut_torn_tail(fd)
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, lines)
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int) -> None:
    """Truncate an unterminated last line (the bytes after the last newline)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    keep = os.pread(fd, size, 0).rfind(b"\n") + 1
    log.warning("ledger: cutting a torn last line (%d bytes) left by a crashed append", size - keep)
    os.ftruncate(fd, keep)


def read_ledger(job_dir: Path) -> list[RenderResult]:
    """The completion records in the ledger, one per variation (a retried append is merged).

    A torn last line (a crash mid-append) is skipped with a warning: its records are in the
    run that was writing it. A line before the last that does not parse raises
    `LedgerCorrupt` naming the file and the line: skipping it could delete finished outputs.
    """
    path = job_dir / LEDGER_NAME
    if path.is_symlink() or not path.is_file():
        return []
    records: dict[tuple[int, int], RenderResult] = {}
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    last = len(lines) - 1  # the part after the final newline ("" when the file ends whole)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = RenderResult.model_validate_json(line)
        except ValueError as err:
            if number - 1 == last:
                log.warning("ledger %s: skipping a torn last line %d", path, number)
                continue
            raise LedgerCorrupt(f"ledger {str(path)!r} line {number} is corrupt: {err}") from None
        records[(result.input_index, result.variation)] = result
    return list(records.values())
