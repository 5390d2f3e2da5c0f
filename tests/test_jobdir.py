"""The job directory: marker, confined sweep, atomic manifest, ledger (no server needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from varia import jobdir
from varia.models import Manifest, RenderResult


def make_job(tmp_path: Path, job_id: str = "job-1") -> Path:
    return jobdir.open_job_dir(tmp_path / "out", job_id)


def test_open_creates_dir_and_marker_and_reopens(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    assert jobdir.marker_job_id(job_dir) == "job-1"
    assert jobdir.open_job_dir(tmp_path / "out", "job-1") == job_dir


def test_open_refuses_a_dir_varia_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "out" / "job-1").mkdir(parents=True)
    (tmp_path / "out" / "job-1" / "precious.txt").write_text("mine")
    with pytest.raises(jobdir.ConfinementError, match="was not created by job 'job-1'"):
        jobdir.open_job_dir(tmp_path / "out", "job-1")


def test_open_refuses_another_jobs_dir_and_a_symlink(tmp_path: Path) -> None:
    make_job(tmp_path, "job-1")
    os.rename(tmp_path / "out" / "job-1", tmp_path / "out" / "job-2")
    with pytest.raises(jobdir.ConfinementError, match="not created by job 'job-2'"):
        jobdir.open_job_dir(tmp_path / "out", "job-2")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "job-3").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(jobdir.ConfinementError, match="is a symlink"):
        jobdir.open_job_dir(tmp_path / "out", "job-3")


def test_sweep_deletes_only_the_jobs_own_unfinished_files(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    stems, variations = ["clip"], 3
    for name in ("clip_v000.mp4", "clip_v001.mp4", ".clip_v002.mp4.part", "notes.txt"):
        (job_dir / name).write_bytes(b"x")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"keep me")
    (job_dir / "clip_v002.mp4").symlink_to(outside)  # an owned *name*, but a symlink
    (job_dir / "sub").mkdir()
    (job_dir / "sub" / "clip_v000.mp4").write_bytes(b"x")

    removed, foreign = jobdir.sweep(
        job_dir, "job-1", keep={"clip_v000.mp4"}, owned=jobdir.owned_names(stems, variations)
    )

    assert removed == [".clip_v002.mp4.part", "clip_v001.mp4"]
    assert foreign == ["clip_v002.mp4", "notes.txt", "sub"]
    assert outside.read_bytes() == b"keep me"
    assert (job_dir / "clip_v002.mp4").is_symlink()
    assert (job_dir / "sub" / "clip_v000.mp4").exists()
    assert (job_dir / "notes.txt").exists() and (job_dir / "clip_v000.mp4").exists()


def test_sweep_refuses_a_dir_without_the_marker(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "clip_v000.mp4").write_bytes(b"x")
    with pytest.raises(jobdir.ConfinementError, match="marker"):
        jobdir.sweep(plain, "job-1", keep=set(), owned={"clip_v000.mp4"})
    assert (plain / "clip_v000.mp4").exists()


def test_manifest_is_written_atomically(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    manifest = Manifest(
        job_id="job-1",
        state="completed",
        seed=1,
        total=0,
        completed=0,
        failed=0,
        outputs=[],
        removed=[],
    )
    path = jobdir.write_manifest(job_dir, manifest)
    assert json.loads(path.read_text())["state"] == "completed"
    assert sorted(p.name for p in job_dir.iterdir()) == [".varia-job", "manifest.json"]


def test_ledger_merges_a_retried_append(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    first = RenderResult(input_index=0, variation=0, path="a_v000.mp4", bytes=1, duration_s=1.0)
    second = RenderResult(input_index=0, variation=1, path="a_v001.mp4", bytes=2, duration_s=1.0)
    jobdir.append_ledger(job_dir, [first])
    jobdir.append_ledger(job_dir, [first, second])
    assert sorted(r.variation for r in jobdir.read_ledger(job_dir)) == [0, 1]


def test_confine_to_allowed_roots(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "a").mkdir(parents=True)
    assert jobdir.confine(str(root / "a"), [root], "input") == (root / "a").resolve()
    assert jobdir.confine("/anything", [], "input") == Path("/anything")
    with pytest.raises(jobdir.ConfinementError, match="outside the allowed roots"):
        jobdir.confine(str(tmp_path / "other"), [root], "input")
    with pytest.raises(jobdir.ConfinementError, match="outside the allowed roots"):
        jobdir.confine(str(root / ".." / "other"), [root], "input")
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(jobdir.ConfinementError, match="outside the allowed roots"):
        jobdir.confine(str(root / "escape" / "x"), [root], "input")
    with pytest.raises(jobdir.ConfinementError, match="not an absolute path"):
        jobdir.confine("rel", [root], "output_dir")
