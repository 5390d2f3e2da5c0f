"""`varia verify DIR`: re-check a job directory against its manifest.

Every listed output must be there as a regular file with its recorded size and SHA-256, and
decode to its stated duration; every listed contact sheet must match its hash and decode as a
PNG; nothing may be in the directory that the manifest does not list, except the manifest and
varia's own `.varia*` files (entries the manifest lists as `foreign` were there before and are
left alone). Each problem is named; none means the directory is what the job left.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from varia import media
from varia.jobdir import read_manifest
from varia.models import Manifest
from varia.names import LEDGER_NAME, MANIFEST_NAME, MARKER_NAME, OWN_PREFIX
from varia.provenance import sha256_of

DURATION_TOLERANCE_S = 0.1
"""How far a decoded duration may differ from the manifest's (it is rounded to 1 ms)."""


class VerifyReport(BaseModel):
    """What `varia verify` found: `ok` when `problems` is empty."""

    job_dir: str
    ok: bool
    job_id: str | None = None
    state: str | None = None
    outputs: int = Field(default=0, description="Outputs the manifest lists.")
    verified: int = Field(default=0, description="Outputs and sheets that passed every check.")
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="Worth knowing; not problems.")


def verify_job_dir(job_dir: Path) -> VerifyReport:
    """Check `job_dir` against its manifest (blocking: reads and hashes every file)."""
    report = VerifyReport(job_dir=str(job_dir), ok=False)
    try:
        manifest = read_manifest(job_dir)
    except FileNotFoundError:
        report.problems.append(f"no {MANIFEST_NAME} in {str(job_dir)!r}")
        return report
    except (OSError, ValueError, ValidationError) as err:
        report.problems.append(f"{MANIFEST_NAME} is not a valid manifest: {_first_line(err)}")
        return report
    report.job_id, report.state, report.outputs = (
        manifest.job_id,
        manifest.state,
        len(manifest.outputs),
    )
    report.problems += _count_problems(manifest)
    listed: set[str] = set()
    for entry in manifest.outputs:
        if problem := _name_problem(entry.path, listed):
            report.problems.append(problem)
            continue
        listed.add(entry.path)
        path = job_dir / entry.path
        problem = file_problem(path, entry.path, entry.bytes, entry.sha256)
        if problem is None:
            try:
                media.check_output(str(path), entry.duration_s, DURATION_TOLERANCE_S)
            except media.MediaError as err:
                problem = f"{entry.path}: {err}"
        if problem:
            report.problems.append(problem)
        else:
            report.verified += 1
        if entry.sha256 is None:
            report.notes.append(f"{entry.path}: no SHA-256 recorded (an older varia made it)")
    for sheet in manifest.sheets:
        if problem := _name_problem(sheet.path, listed):
            report.problems.append(problem)
            continue
        listed.add(sheet.path)
        path = job_dir / sheet.path
        problem = file_problem(path, sheet.path, sheet.bytes, sheet.sha256)
        if problem is None:
            problem = _png_problem(path, sheet.path)
        if problem:
            report.problems.append(problem)
        else:
            report.verified += 1
    listed |= set(manifest.foreign)
    for name in sorted(os.listdir(job_dir)):
        if name in listed or name in LEFT_BY_A_JOB:
            continue
        if name.startswith(OWN_PREFIX):
            report.problems.append(f"{name}: not a file a finished job leaves (nor listed)")
        else:
            report.problems.append(f"{name}: not listed in the manifest")
    report.ok = not report.problems
    return report


LEFT_BY_A_JOB = frozenset({MANIFEST_NAME, MARKER_NAME, LEDGER_NAME})
"""varia's own files that a finished job's directory holds besides what the manifest lists."""


def _name_problem(name: str, listed: set[str]) -> str | None:
    """A listed path must be one plain name in the job directory, listed once."""
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        return f"{name!r}: not a file of the job directory (a listed path is one plain name)"
    if name in listed or name in LEFT_BY_A_JOB:
        return f"{name}: listed twice"
    return None


def _count_problems(manifest: Manifest) -> list[str]:
    """The manifest's counts must agree with its list and its state."""
    problems = []
    if manifest.completed != len(manifest.outputs):
        problems.append(
            f"the manifest says {manifest.completed} completed but lists {len(manifest.outputs)}"
        )
    if manifest.completed > manifest.total:
        problems.append(f"{manifest.completed} completed of {manifest.total} in all")
    if manifest.state == "completed" and manifest.completed != manifest.total:
        problems.append(
            f"state completed, but {manifest.completed} of {manifest.total} variations are kept"
        )
    return problems


def file_problem(path: Path, name: str, size: int, sha256: str | None) -> str | None:
    """What is wrong with the file at `path` against its recorded size and SHA-256 (None:
    nothing); `name` names it in the message."""
    if path.is_symlink():
        return f"{name}: is a symlink, not the file the job wrote"
    if not path.exists():
        return f"{name}: missing"
    if not path.is_file():
        return f"{name}: not a regular file"
    actual = path.stat().st_size
    if actual != size:
        return f"{name}: {actual} bytes, the manifest says {size}"
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256:
            return f"{name}: SHA-256 {digest[:16]}… differs from the recorded {sha256[:16]}…"
    return None


def _png_problem(path: Path, name: str) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return f"{name}: not a PNG ({image.format})"
            image.load()
    except (OSError, UnidentifiedImageError) as err:
        return f"{name}: does not decode as PNG: {err}"
    return None


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
