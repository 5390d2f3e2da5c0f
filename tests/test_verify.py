"""`varia verify` on a tampered manifest (no server): a listed path outside the job directory, a
path listed twice, counts that disagree with the list or the state, and stray `.varia*` files
are each a problem (an attacker's review found all of them reported ok)."""

from __future__ import annotations

from pathlib import Path

import pytest

from varia import jobdir, names
from varia.models import Manifest, OutputEntry
from varia.recipes import make_recipe
from varia.verify import verify_job_dir


def entry(path: str, variation: int = 0) -> OutputEntry:
    return OutputEntry(
        input_index=0, variation=variation, path=path, bytes=4, duration_s=1.0,
        recipe=make_recipe(0, 0, variation), input="/in/a.mp4",
    )  # fmt: skip


def write(job_dir: Path, outputs: list[OutputEntry], **fields: object) -> None:
    manifest = Manifest.model_validate(
        {
            "job_id": job_dir.name, "state": "cancelled", "seed": 0, "total": 6,
            "completed": len(outputs), "failed": 0, "outputs": outputs, "removed": [],
            **fields,
        }
    )  # fmt: skip
    jobdir.write_manifest(job_dir, manifest)


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    made = jobdir.open_job_dir(tmp_path / "out", "job-verify")
    (tmp_path / "out" / "other").mkdir()
    (tmp_path / "out" / "other" / "a_v000.mp4").write_bytes(b"data")
    return made


@pytest.mark.parametrize("path", ["../other/a_v000.mp4", "/etc/hostname", ".", "sub/a.mp4"])
def test_a_listed_path_outside_the_job_directory_is_a_problem(job_dir: Path, path: str) -> None:
    write(job_dir, [entry(path)])
    report = verify_job_dir(job_dir)
    assert not report.ok and report.verified == 0
    assert any("one plain name" in problem for problem in report.problems), report.problems


def test_a_path_listed_twice_and_counts_that_disagree_are_problems(job_dir: Path) -> None:
    write(job_dir, [entry("a_v000.mp4"), entry("a_v000.mp4", 1)], completed=5, state="completed")
    problems = verify_job_dir(job_dir).problems
    assert "a_v000.mp4: listed twice" in problems
    assert "the manifest says 5 completed but lists 2" in problems
    assert "state completed, but 5 of 6 variations are kept" in problems


def test_a_stray_varia_file_is_a_problem_and_the_marker_is_not(job_dir: Path) -> None:
    write(job_dir, [])
    (job_dir / ".varia-evil").write_bytes(b"x")
    problems = verify_job_dir(job_dir).problems
    assert problems == [".varia-evil: not a file a finished job leaves (nor listed)"]
    assert (job_dir / names.MARKER_NAME).exists()
