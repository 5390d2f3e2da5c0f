"""An output's provenance record on disk: written by its render, merged into the manifest by
cleanup, so the workflow history carries only the short completion record.

A render's full result (recipe, quality, SHA-256, FFmpeg build, varia version, argv, attempts)
is about 1.6 KB, most of it the argv; every byte of it went into the history up to three times
(render result, ledger append, cleanup input). The render now writes it next to the output as
`.varia-record-<output>.json` (atomically, after the output's commit) and returns only what the
workflow uses (`brief`). Cleanup reads the records of the kept outputs (`with_records`), writes
the manifest, then deletes them; the records of outputs it does not keep are swept with them.

Results of older workers carry the whole record inline; they are used as they are.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from varia import jobdir
from varia.models import RenderResult
from varia.names import atomic_temp_name, record_name

log = logging.getLogger("varia.activities")

BRIEF_FIELDS = frozenset({"input_index", "variation", "path", "bytes", "duration_s"})
"""What a render returns to the workflow: the completion record, without the provenance."""


def keep(job_dir: Path, result: RenderResult) -> RenderResult:
    """Write the result's record next to its output; return the brief result (blocking)."""
    jobdir.write_file_atomic(job_dir, record_name(result.path), result.model_dump_json().encode())
    return brief(result)


def brief(result: RenderResult) -> RenderResult:
    """The result without the fields its record holds."""
    return RenderResult.model_validate(result.model_dump(include=set(BRIEF_FIELDS)))


def is_brief(result: RenderResult) -> bool:
    """Whether a result lacks its record (a render's result now; one of an older worker
    carries it inline, or, older still, has none)."""
    return result.sha256 is None and result.argv is None


def with_records(job_dir: Path, results: Iterable[RenderResult]) -> list[RenderResult]:
    """Each brief result completed from its record file, or (a cleanup retried after it
    deleted the records) from the manifest it wrote (blocking). A result whose record is in
    neither stays brief, logged (`varia verify` notes an output without a SHA-256)."""
    full: list[RenderResult] = []
    previous: dict[str, RenderResult] | None = None
    for result in results:
        if not is_brief(result):
            full.append(result)
            continue
        found = _read(job_dir / record_name(result.path), result)
        if found is None:
            previous = _manifest_entries(job_dir) if previous is None else previous
            found = _matching(previous.get(result.path), result)
        if found is None:
            log.warning("%s: no provenance record in %s", result.path, job_dir)
        full.append(found or result)
    return full


def record_names(output_names: Iterable[str]) -> set[str]:
    """The record names (and their atomic-write scratch names) of these outputs."""
    names = {record_name(name) for name in output_names}
    return names | {atomic_temp_name(name) for name in names}


def _read(path: Path, result: RenderResult) -> RenderResult | None:
    """The record at `path` if it is a regular file (not a symlink) describing the result."""
    try:
        data = _read_regular(path)
    except OSError as err:
        log.warning("%s: unreadable provenance record: %s", path, err)
        return None
    if data is None:
        return None
    try:
        record = RenderResult.model_validate_json(data)
    except ValidationError as err:
        log.warning("%s: unreadable provenance record: %s", path, err)
        return None
    return _matching(record, result)


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file; None if there is none or it is a symlink or no regular
    file (one open that does not follow a symlink, instead of two stats and an open)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return handle.read()


def _matching(record: RenderResult | None, result: RenderResult) -> RenderResult | None:
    """The record if it describes the result's output (same variation, name and size)."""
    if record is None or any(
        getattr(record, field) != getattr(result, field) for field in BRIEF_FIELDS
    ):
        return None
    return record


def _manifest_entries(job_dir: Path) -> dict[str, RenderResult]:
    """The outputs of the manifest already in the job directory, by path (none: empty)."""
    manifest = jobdir.earlier_manifest(job_dir)
    if manifest is None:
        return {}
    return {
        entry.path: RenderResult.model_validate(entry.model_dump(exclude={"input"}))
        for entry in manifest.outputs
    }
