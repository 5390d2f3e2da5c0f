"""The job directory: confinement, the marker file, the confined cleanup and the manifest.

A job writes only inside `<output_dir>/<job id>/`. The directory carries a marker file
(`.varia-job`) naming the job id and the execution chain that made it (the first run id of the
workflow: continue-as-new, retries and resets keep it). A later execution under a reused
workflow id is a new chain: it never adopts, changes or deletes the directory. Cleanup refuses
a directory whose marker is not the job's, never follows a symlink, never leaves the directory
and only deletes names the job itself could have created (its planned outputs and their
temporary files). Anything else found there is reported as foreign and left alone.

Over 300 lines on purpose: every write into a job directory (marker, sweep, discard, atomic
manifest and sheet writes, a render's commit) goes through here, so the confinement rules are
read and checked in one place. Which job ids are safe names is `varia.job_id`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from varia.job_id import job_id_problem
from varia.models import Manifest
from varia.names import (
    ATOMIC_PREFIX,
    LEDGER_NAME,
    MANIFEST_NAME,
    MARKER_NAME,
    atomic_temp_name,
    parse_temp_name,
    record_name,
    temp_name,
)
from varia.recipes import output_name


class ConfinementError(Exception):
    """A path or job id would take the job outside where it may write or read."""


class JobDirTaken(ConfinementError):
    """The job directory belongs to an earlier execution under the same workflow id."""


class PathTooLong(ConfinementError):
    """The job would write a path longer than the system takes (refused before anything)."""


PATH_MAX_BYTES = 4095
"""The longest path (bytes) Linux takes: PATH_MAX, 4096 with its NUL."""


def check_path_lengths(job_dir: Path, stems: Sequence[str], variations: int) -> None:
    """Raise `PathTooLong` if the longest name the job would write in `job_dir` (an output's
    record's scratch name) makes a path over `PATH_MAX_BYTES`: found before anything is made,
    not after every output has rendered and failed to be recorded."""
    longest = max(
        (
            atomic_temp_name(record_name(output_name(stem, variations - 1, variations)))
            for stem in stems
        ),
        key=lambda name: len(os.fsencode(name)),
    )
    size = len(os.fsencode(job_dir / longest))
    if size > PATH_MAX_BYTES:
        raise PathTooLong(
            f"output_dir {str(job_dir.parent)[:80]!r}… is too long: the job would write paths of "
            f"{size:,} bytes (at most {PATH_MAX_BYTES:,}); choose a shorter output_dir"
        )


class NameTaken(ConfinementError):
    """A name varia writes in the job directory is taken by a directory it did not make."""


def check_names_free(directory: Path, names: Iterable[str]) -> None:
    """Raise `NameTaken` if a directory (not made by varia) sits at one of these names, where
    varia will write a file: a render fails at once, not after its FFmpeg, five times."""
    for name in names:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            raise NameTaken(
                f"{str(path)!r} is a directory varia did not make, where it writes a file; move "
                "it out of the job directory (varia never deletes what it did not make)"
            )


class OutputDirUnusable(ConfinementError):
    """`output_dir` cannot hold the job directory: not a directory, or not writable."""


class JobDirGone(OutputDirUnusable):
    """The job directory was deleted (or replaced) while the job ran: nothing can be written
    there any more, and varia makes nothing again."""


def job_dir_gone(job_dir: Path) -> JobDirGone | None:
    """`JobDirGone` naming `job_dir` if it is no longer a directory; None while it is one."""
    try:
        if stat.S_ISDIR(os.lstat(job_dir).st_mode):
            return None
        how = "replaced by a file or symlink"
    except (FileNotFoundError, NotADirectoryError):
        how = "deleted"
    return JobDirGone(f"the job directory {str(job_dir)!r} was {how} while the job ran")


@dataclass(frozen=True)
class Marker:
    """What a job directory's marker says: the job id and, since chains are recorded, the
    first run id of the execution chain that made it (None in a marker of older varia)."""

    job_id: str
    chain: str | None = None


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


def open_job_dir(output_dir: Path, job_id: str, chain: str | None = None) -> Path:
    """Create (or reopen) the job directory and its marker; return its path.

    `chain` is the first run id of the calling workflow execution chain. An existing
    directory is reopened only by the chain that made it (a retried prepare). A directory of
    another chain raises `JobDirTaken`; so does one of older varia (a marker without a chain)
    unless it holds nothing but its marker. A directory varia did not create is never taken
    over. Nothing is written into a directory that is refused. `chain=None` (a prepare
    scheduled by older workflow code) keeps the old rule: the job id alone decides.
    """
    problem = job_id_problem(job_id)
    if problem:
        raise JobDirTaken(f"invalid job id: {problem}")
    owner = enclosing_job_dir(output_dir)  # before making it: nothing is made in there
    if owner is not None:
        raise JobDirTaken(
            f"output_dir {str(output_dir)!r} is inside the job directory {str(owner)!r}: a job "
            "directory holds only its own job's files; choose an output_dir outside it"
        )
    _make_output_dir(output_dir)
    job_dir = output_dir / job_id
    if job_dir.is_symlink():
        raise JobDirTaken(
            f"the job directory's name {str(job_dir)!r} is taken by a symlink; choose another "
            "workflow id or output_dir"
        )
    try:
        job_dir.mkdir(exist_ok=False)
    except FileExistsError:
        _check_reopen(job_dir, job_id, chain)
        return job_dir
    except OSError as err:
        raise _unusable(output_dir, err) from err
    try:
        _write_marker(job_dir, Marker(job_id, chain))
    except BaseException:
        _unmake(job_dir)  # made by this call: a retry starts afresh, not "not created by"
        raise
    return job_dir


def enclosing_job_dir(path: Path) -> Path | None:
    """The job directory `path` is (or lies inside), by its marker; None if none."""
    for directory in (path, *path.parents):
        if (directory / MARKER_NAME).is_file():
            return directory
    return None


def _unmake(job_dir: Path) -> None:
    """Remove a job directory this process has just made, with its half-written marker; a
    directory holding anything else is left as it is."""
    for name in (MARKER_NAME, atomic_temp_name(MARKER_NAME)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job_dir / name)
    with contextlib.suppress(OSError):
        os.rmdir(job_dir)


def _make_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unusable(output_dir, err) from err


def _unusable(output_dir: Path, err: OSError) -> OutputDirUnusable:
    """The error for an output dir (or a parent of it) that cannot hold the job directory."""
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return OutputDirUnusable(
            f"output_dir {str(output_dir)!r} is not a directory (a file is in the way)"
        )
    reason = os.strerror(err.errno) if err.errno else str(err)
    return OutputDirUnusable(f"output_dir {str(output_dir)!r} is not writable ({reason})")


def _check_reopen(job_dir: Path, job_id: str, chain: str | None) -> None:
    """Raise unless the chain `chain` of job `job_id` may reopen the existing `job_dir`."""
    if not job_dir.is_dir():
        raise JobDirTaken(
            f"the job directory's name {str(job_dir)!r} is taken by a file in output_dir; "
            "choose another workflow id or output_dir"
        )
    marker = read_marker(job_dir)
    if marker is None or marker.job_id != job_id:
        raise JobDirTaken(
            f"job directory {str(job_dir)!r} already exists and was not created by job "
            f"{job_id!r}; choose another workflow id or output_dir"
        )
    if chain is None or marker.chain == chain:
        return
    if marker.chain is None and _only_marker(job_dir):
        _write_marker(job_dir, Marker(job_id, chain))  # nothing in it to lose: adopt it
        return
    raise JobDirTaken(
        f"job directory {str(job_dir)!r} belongs to an earlier execution of workflow id "
        f"{job_id!r} (first run {marker.chain or 'of an older varia'}); this execution (first "
        f"run {chain}) wrote nothing there. Start the job under a new workflow id (varia start "
        "--id) or with another output_dir; scripts that reuse ids should start jobs with the "
        "id-reuse policy REJECT_DUPLICATE"
    )


def _only_marker(job_dir: Path) -> bool:
    with os.scandir(job_dir) as entries:
        return all(
            entry.name == MARKER_NAME or entry.name.startswith(ATOMIC_PREFIX) for entry in entries
        )


def _write_marker(job_dir: Path, marker: Marker) -> None:
    data: dict[str, str] = {"job_id": marker.job_id}
    if marker.chain is not None:
        data["first_execution_run_id"] = marker.chain
    _write_atomic(job_dir, MARKER_NAME, json.dumps(data).encode())


def read_marker(job_dir: Path) -> Marker | None:
    """The directory's marker, or None if there is no valid one."""
    marker = job_dir / MARKER_NAME
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
        return None
    chain = data.get("first_execution_run_id")
    return Marker(data["job_id"], chain if isinstance(chain, str) else None)


def check_owner(job_dir: Path, job_id: str, chain: str | None, doing: str) -> None:
    """Raise unless the marker names job `job_id` and chain `chain` (`JobDirGone` if the
    directory itself is gone: its marker is not wrong, there is none to read).

    A marker without a chain (made by older varia for a chain that older varia started)
    matches any chain of that job id: new executions never adopt such a directory unless
    it is empty (`open_job_dir`), so only the chain that made it gets here.
    """
    marker = read_marker(job_dir)
    if marker is None and (gone := job_dir_gone(job_dir)) is not None:
        raise JobDirGone(f"{gone}: cannot {doing} it, and varia makes nothing again (no manifest)")
    if marker is None or marker.job_id != job_id:
        raise ConfinementError(
            f"refusing to {doing} {str(job_dir)!r}: its marker does not name job {job_id!r}"
        )
    if chain is not None and marker.chain is not None and marker.chain != chain:
        raise JobDirTaken(
            f"refusing to {doing} {str(job_dir)!r}: it belongs to execution {marker.chain} of "
            f"job {job_id!r}, not to this one ({chain})"
        )


def owned_names(stems: Sequence[str], variations: int) -> set[str]:
    """Every file name the job may create: its planned outputs and their temporary names."""
    names = {atomic_temp_name(MANIFEST_NAME)}
    for stem in stems:
        for variation in range(variations):
            final = output_name(stem, variation, variations)
            names.add(final)
            names.add(temp_name(final))
    return names


def sweep(
    job_dir: Path, job_id: str, keep: Iterable[str], owned: set[str], chain: str | None = None
) -> tuple[list[str], list[str]]:
    """Delete the job's own files that are not kept; return (removed, foreign) names, sorted.

    Refuses (`check_owner`) unless the marker names this job and execution chain. Only
    regular files directly in `job_dir` whose names are in `owned` are deleted. Symlinks,
    directories and unknown files are left alone and reported as foreign.
    """
    check_owner(job_dir, job_id, chain, "clean")
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


def discard_partials(
    job_dir: Path, job_id: str, names: Iterable[str], chain: str | None = None
) -> list[str]:
    """Delete temporary render files (`.<output>.part`) of the job; return those deleted.

    Only regular files directly in `job_dir` whose name is a temporary render name are
    touched, and only if the directory's marker names `job_id` and the chain `chain`.
    """
    check_owner(job_dir, job_id, chain, "clean")
    removed = []
    for name in names:
        if "/" in name or name in (".", "..") or parse_temp_name(name) is None:
            continue
        path = job_dir / name
        if path.is_symlink() or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(name)
    _fsync_dir(job_dir)
    return sorted(removed)


def write_manifest(job_dir: Path, manifest: Manifest) -> Path:
    """Write `manifest.json` atomically (temp file, fsync, rename, fsync of the directory)."""
    data = manifest.model_dump_json(indent=2).encode() + b"\n"
    return _write_atomic(job_dir, MANIFEST_NAME, data)


def read_manifest(job_dir: Path) -> Manifest:
    """The job directory's manifest; raises `OSError` (`FileNotFoundError` if there is none),
    `ValueError` for bad JSON or `pydantic.ValidationError` for a bad shape."""
    return Manifest.model_validate(json.loads((job_dir / MANIFEST_NAME).read_bytes()))


def earlier_manifest(job_dir: Path) -> Manifest | None:
    """The manifest an earlier attempt of this cleanup wrote, if it is a regular, readable
    file (None otherwise: a retry then works from the disk alone)."""
    path = job_dir / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        return None
    try:
        return read_manifest(job_dir)
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def open_own(path: Path, flags: int) -> int:
    """A descriptor of a file in a job directory that varia writes, opened with `flags`:
    never through a symlink, and never a file that has a second name (a hard link planted
    there would carry the write to a file outside the job directory); OSError otherwise."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(errno.EPERM, "not a file of the job's own (a link to another)", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_new(path: Path, data: bytes) -> None:
    """Write `data` as a new file at `path`: whatever entry had that name is removed first
    (a symlink or hard link planted there is unlinked, never written through)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_atomic(directory: Path, name: str, data: bytes) -> Path:
    temp = directory / atomic_temp_name(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)  # a link planted at the scratch name is removed, never written through
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        final = directory / name
        check_names_free(directory, [name])
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)
    return final


def commit_output(temp: Path, final: Path) -> None:
    """Put a checked render output into place: fsync it, rename it over `final`, fsync the
    directory (after a crash the final name holds nothing or the whole file)."""
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write a varia-made file (e.g. a contact sheet) atomically, as the manifest is written."""
    return _write_atomic(directory, name, data)
