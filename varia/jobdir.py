"""The job directory: confinement, the marker file, the confined cleanup and the manifest.

A job writes only inside `<output_dir>/<job id>/`. The directory carries a marker file
(`.varia-job`); cleanup refuses a directory without it, never follows a symlink, never leaves
the directory and only deletes names the job itself could have created (its planned outputs
and their temporary files). Anything else found there is reported as foreign and left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from varia.models import Manifest, RenderResult, temp_name_for
from varia.recipes import output_name

MARKER_NAME = ".varia-job"
MANIFEST_NAME = "manifest.json"
LEDGER_NAME = ".varia-ledger.jsonl"
"""Completion records of earlier workflow runs of a long job (one JSON object a line)."""
_JOB_ID_MAX = 200


class ConfinementError(Exception):
    """A path or job id would take the job outside where it may write or read."""


def job_id_problem(job_id: str) -> str | None:
    """Why `job_id` is unsafe as one directory name, or None if it is safe (pure)."""
    if not job_id:
        return "the job id is empty"
    if len(job_id) > _JOB_ID_MAX:
        return f"the job id is longer than {_JOB_ID_MAX} characters"
    if job_id in {".", ".."}:
        return f"the job id {job_id!r} is a relative directory reference"
    if "/" in job_id or "\\" in job_id:
        return f"the job id {job_id!r} contains a path separator"
    if "\x00" in job_id:
        return "the job id contains a NUL character"
    if job_id.startswith("-"):
        return f"the job id {job_id!r} starts with '-'"
    if any(ord(ch) < 32 for ch in job_id):
        return "the job id contains a control character"
    return None


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def confine(path: str, roots: Sequence[Path], what: str) -> Path:
    """Resolve `path` (symlinks too) and check it lies under one of `roots` (if any).

    Raises `ConfinementError` naming the path when it is relative or outside every root.
    """
    if not os.path.isabs(path):
        raise ConfinementError(f"{what} {path!r} is not an absolute path")
    resolved = Path(path).resolve()
    allowed = [Path(root).resolve() for root in roots]
    if allowed and not _within(resolved, allowed):
        names = ":".join(str(root) for root in allowed)
        raise ConfinementError(f"{what} {path!r} is outside the allowed roots ({names})")
    return resolved


def open_job_dir(output_dir: Path, job_id: str) -> Path:
    """Create (or reopen) the job directory and its marker; return its path.

    An existing directory is reused only if its marker names the same job; a directory that
    varia did not create is never taken over.
    """
    problem = job_id_problem(job_id)
    if problem:
        raise ConfinementError(problem)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfinementError(f"output_dir {str(output_dir)!r} cannot be created: {err}") from err
    job_dir = output_dir / job_id
    if job_dir.is_symlink():
        raise ConfinementError(f"job directory {str(job_dir)!r} is a symlink; refusing it")
    try:
        job_dir.mkdir(exist_ok=False)
    except FileExistsError:
        owner = marker_job_id(job_dir)
        if owner != job_id:
            raise ConfinementError(
                f"job directory {str(job_dir)!r} already exists and was not created by job "
                f"{job_id!r}; choose another workflow id or output_dir"
            ) from None
        return job_dir
    except OSError as err:
        raise ConfinementError(f"job directory {str(job_dir)!r} cannot be created: {err}") from err
    _write_atomic(job_dir, MARKER_NAME, json.dumps({"job_id": job_id}).encode())
    return job_dir


def marker_job_id(job_dir: Path) -> str | None:
    """The job id the directory's marker names, or None if there is no valid marker."""
    marker = job_dir / MARKER_NAME
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        value = json.loads(marker.read_text()).get("job_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def owned_names(stems: Sequence[str], variations: int) -> set[str]:
    """Every file name the job may create: its planned outputs and their temporary names."""
    names = {_temp_for(MANIFEST_NAME)}
    for stem in stems:
        for variation in range(variations):
            final = output_name(stem, variation, variations)
            names.add(final)
            names.add(temp_name_for(final))
    return names


def sweep(
    job_dir: Path, job_id: str, keep: Iterable[str], owned: set[str]
) -> tuple[list[str], list[str]]:
    """Delete the job's own files that are not kept; return (removed, foreign) names, sorted.

    Only regular files directly in `job_dir` whose names are in `owned` are deleted.
    Symlinks, directories and unknown files are left alone and reported as foreign.
    """
    if marker_job_id(job_dir) != job_id:
        raise ConfinementError(
            f"refusing to clean {str(job_dir)!r}: its marker does not name job {job_id!r}"
        )
    kept = set(keep) | {MANIFEST_NAME, MARKER_NAME, LEDGER_NAME}
    removed: list[str] = []
    foreign: list[str] = []
    with os.scandir(job_dir) as entries:
        for entry in entries:
            if entry.name in kept and entry.is_file(follow_symlinks=False):
                continue
            if entry.name in owned and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(job_dir / entry.name)
                removed.append(entry.name)
            else:
                foreign.append(entry.name)
    _fsync_dir(job_dir)
    return sorted(removed), sorted(foreign)


def append_ledger(job_dir: Path, results: Iterable[RenderResult]) -> None:
    """Append completion records to the ledger and fsync it (duplicates are fine: see read)."""
    lines = "".join(result.model_dump_json() + "\n" for result in results)
    fd = os.open(
        job_dir / LEDGER_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644
    )
    with os.fdopen(fd, "a") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())


def read_ledger(job_dir: Path) -> list[RenderResult]:
    """The completion records in the ledger, one per variation (a retried append is merged)."""
    path = job_dir / LEDGER_NAME
    if path.is_symlink() or not path.is_file():
        return []
    records: dict[tuple[int, int], RenderResult] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                result = RenderResult.model_validate_json(line)
                records[(result.input_index, result.variation)] = result
    return list(records.values())


def write_manifest(job_dir: Path, manifest: Manifest) -> Path:
    """Write `manifest.json` atomically (temp file, fsync, rename, fsync of the directory)."""
    data = manifest.model_dump_json(indent=2).encode() + b"\n"
    return _write_atomic(job_dir, MANIFEST_NAME, data)


def _write_atomic(directory: Path, name: str, data: bytes) -> Path:
    temp = directory / _temp_for(name)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        final = directory / name
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)
    return final


def _temp_for(name: str) -> str:
    return ".varia-tmp-" + name.lstrip(".")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write a varia-made file (e.g. a contact sheet) atomically, as the manifest is written."""
    return _write_atomic(directory, name, data)


def atomic_temp_name(name: str) -> str:
    """The temporary name `write_file_atomic` writes `name` to first (cleanup owns it)."""
    return _temp_for(name)
