"""The job directory: marker, confined sweep, atomic manifest, ledger (no server needed)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from varia import errors, jobdir, ledger, names
from varia.models import Manifest, RenderResult


def make_job(tmp_path: Path, job_id: str = "job-1") -> Path:
    return jobdir.open_job_dir(tmp_path / "out", job_id)


def test_open_creates_dir_and_marker_and_reopens(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    marker = jobdir.read_marker(job_dir)
    assert marker is not None and marker.job_id == "job-1"
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
    with pytest.raises(jobdir.JobDirTaken, match="is taken by a symlink"):
        jobdir.open_job_dir(tmp_path / "out", "job-3")


def test_open_refuses_an_output_dir_inside_a_job_dir(tmp_path: Path) -> None:
    """A job whose output_dir is (inside) another job's directory would put its own directory
    there, say at `manifest.json`: the other job could then never write its manifest."""
    job_dir = make_job(tmp_path, "job-1")
    for output_dir in (job_dir, job_dir / "deeper" / "still"):
        with pytest.raises(jobdir.JobDirTaken, match="is inside the job directory"):
            jobdir.open_job_dir(output_dir, "manifest.json")
    assert sorted(p.name for p in job_dir.iterdir()) == [names.MARKER_NAME]
    assert errors.confinement_failure(jobdir.JobDirTaken("x")).type == errors.BAD_REQUEST


def test_a_job_dir_whose_marker_cannot_be_written_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills between making the directory and writing its marker: the directory is
    removed, so the retry makes it afresh instead of refusing it as not the job's."""
    real = jobdir._write_atomic

    def full(directory: Path, name: str, data: bytes) -> Path:
        (directory / names.atomic_temp_name(name)).write_bytes(data[:3])  # half written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobdir, "_write_atomic", full)
    with pytest.raises(OSError, match="No space left"):
        jobdir.open_job_dir(tmp_path / "out", "job-1", "chain-1")
    assert list((tmp_path / "out").iterdir()) == []
    failure = errors.write_failure("x", OSError(errno.ENOSPC, "No space left on device"))
    assert failure is not None and failure.type == errors.NO_SPACE
    monkeypatch.setattr(jobdir, "_write_atomic", real)
    job_dir = jobdir.open_job_dir(tmp_path / "out", "job-1", "chain-1")  # the retry
    assert jobdir.read_marker(job_dir) == jobdir.Marker("job-1", "chain-1")


def test_a_directory_at_the_manifests_name_is_a_clear_error(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path, "job-1")
    (job_dir / names.MANIFEST_NAME).mkdir()
    (job_dir / names.MANIFEST_NAME / "theirs.txt").write_text("kept")
    with pytest.raises(jobdir.NameTaken, match="is a directory varia did not make"):
        jobdir.write_manifest(job_dir, _empty_manifest())
    assert (job_dir / names.MANIFEST_NAME / "theirs.txt").read_text() == "kept"
    assert errors.confinement_failure(jobdir.NameTaken("x")).type == errors.OUTPUT_DIR_UNUSABLE


def test_sweep_deletes_only_the_jobs_own_unfinished_files(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    stems, variations = ["clip"], 3
    for name in ("clip_v000.mp4", "clip_v001.mp4", names.temp_name("clip_v002.mp4"), "notes.txt"):
        (job_dir / name).write_bytes(b"x")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"keep me")
    (job_dir / "clip_v002.mp4").symlink_to(outside)  # an owned *name*, but a symlink
    (job_dir / "sub").mkdir()
    (job_dir / "sub" / "clip_v000.mp4").write_bytes(b"x")

    removed, foreign = jobdir.sweep(
        job_dir, "job-1", keep={"clip_v000.mp4"}, owned=jobdir.owned_names(stems, variations)
    )

    assert removed == [names.temp_name("clip_v002.mp4"), "clip_v001.mp4"]
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


def test_cleanup_of_a_deleted_job_directory_says_so_and_makes_nothing(tmp_path: Path) -> None:
    """`rm -rf` of the job directory while the job ran: its cleanup fails, not retried, saying
    the directory was deleted (not that its marker names another job), and makes nothing."""
    from varia.cleanup import clean_up_job
    from varia.models import CleanupRequest

    job_dir = make_job(tmp_path)
    shutil.rmtree(job_dir)
    request = CleanupRequest(
        job_id="job-1", job_dir=str(job_dir), state="failed", inputs=["/in/clip.mp4"],
        stems=["clip"], variations=2, seed=0, results=[], failed=2,
    )  # fmt: skip
    with pytest.raises(ApplicationError) as raised:
        clean_up_job(request)
    assert raised.value.type == errors.OUTPUT_DIR_UNUSABLE and raised.value.non_retryable
    assert f"{str(job_dir)!r} was deleted while the job ran" in raised.value.message
    assert "no manifest" in raised.value.message and "marker" not in raised.value.message
    assert list((tmp_path / "out").iterdir()) == [], "nothing made again"


def _empty_manifest() -> Manifest:
    return Manifest(
        job_id="job-1",
        state="completed",
        seed=1,
        total=0,
        completed=0,
        failed=0,
        outputs=[],
        removed=[],
    )


def test_manifest_is_written_atomically(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    manifest = _empty_manifest()
    path = jobdir.write_manifest(job_dir, manifest)
    assert json.loads(path.read_text())["state"] == "completed"
    assert sorted(p.name for p in job_dir.iterdir()) == [".varia-job", names.MANIFEST_NAME]


def test_ledger_merges_a_retried_append(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    first = RenderResult(input_index=0, variation=0, path="a_v000.mp4", bytes=1, duration_s=1.0)
    second = RenderResult(input_index=0, variation=1, path="a_v001.mp4", bytes=2, duration_s=1.0)
    ledger.append_ledger(job_dir, [first])
    ledger.append_ledger(job_dir, [first, second])
    assert sorted(r.variation for r in ledger.read_ledger(job_dir)) == [0, 1]


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


def test_a_new_chain_never_reopens_another_chains_dir(tmp_path: Path) -> None:
    job_dir = jobdir.open_job_dir(tmp_path / "out", "job-1", "run-a")
    (job_dir / "clip_v000.mp4").write_bytes(b"first run's")
    assert jobdir.open_job_dir(tmp_path / "out", "job-1", "run-a") == job_dir  # retried prepare
    before = (job_dir / ".varia-job").read_bytes()
    with pytest.raises(jobdir.JobDirTaken, match="earlier execution of workflow id 'job-1'"):
        jobdir.open_job_dir(tmp_path / "out", "job-1", "run-b")
    assert (job_dir / ".varia-job").read_bytes() == before
    with pytest.raises(jobdir.JobDirTaken, match="belongs to execution run-a"):
        jobdir.sweep(job_dir, "job-1", keep=set(), owned={"clip_v000.mp4"}, chain="run-b")
    assert (job_dir / "clip_v000.mp4").read_bytes() == b"first run's"


def test_a_marker_of_older_varia(tmp_path: Path) -> None:
    """Old markers hold only the job id. The chain that made one (started before the upgrade,
    continued by new code) still cleans it; a new chain adopts it only while it is empty."""
    old = tmp_path / "out" / "job-1"
    old.mkdir(parents=True)
    (old / ".varia-job").write_text(json.dumps({"job_id": "job-1"}))
    (old / names.temp_name("clip_v000.mp4")).write_bytes(b"x")
    assert jobdir.sweep(old, "job-1", set(), {names.temp_name("clip_v000.mp4")}, chain="run-a")[
        0
    ] == [names.temp_name("clip_v000.mp4")]
    assert jobdir.open_job_dir(tmp_path / "out", "job-1", "run-b") == old  # empty: adopted
    assert jobdir.read_marker(old) == jobdir.Marker("job-1", "run-b")

    kept = tmp_path / "out" / "job-2"
    kept.mkdir()
    (kept / ".varia-job").write_text(json.dumps({"job_id": "job-2"}))
    (kept / "clip_v000.mp4").write_bytes(b"x")
    with pytest.raises(jobdir.JobDirTaken, match="older varia"):
        jobdir.open_job_dir(tmp_path / "out", "job-2", "run-c")
    assert json.loads((kept / ".varia-job").read_text()) == {"job_id": "job-2"}
    assert jobdir.open_job_dir(tmp_path / "out", "job-2", None) == kept  # old workflow code


def test_output_dir_errors_say_what_is_wrong(tmp_path: Path) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    with pytest.raises(jobdir.OutputDirUnusable, match="is not a directory \\(a file is in"):
        jobdir.open_job_dir(in_the_way, "job-1", "run-a")
    with pytest.raises(jobdir.OutputDirUnusable, match="is not a directory"):
        jobdir.open_job_dir(in_the_way / "below", "job-1", "run-a")
    assert in_the_way.read_text() == "x"


def result(variation: int) -> RenderResult:
    return RenderResult(
        input_index=0, variation=variation, path=f"a_v{variation:03}.mp4", bytes=1, duration_s=1
    )


def test_ledger_torn_last_line_is_skipped_then_cut(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    ledger.append_ledger(job_dir, [result(0)])
    path = job_dir / names.LEDGER_NAME
    with open(path, "ab") as handle:
        handle.write(result(1).model_dump_json().encode()[:20])  # a crash mid-append
    assert [r.variation for r in ledger.read_ledger(job_dir)] == [0]
    ledger.append_ledger(job_dir, [result(1), result(2)])  # the retried append
    assert sorted(r.variation for r in ledger.read_ledger(job_dir)) == [0, 1, 2]
    assert path.read_bytes().count(b"\n") == 3 and path.read_bytes().endswith(b"}\n")


def test_ledger_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    path = job_dir / names.LEDGER_NAME
    path.write_text(result(0).model_dump_json() + "\n{garbage\n" + result(1).model_dump_json())
    with pytest.raises(ledger.LedgerCorrupt, match=f"{path}' line 2 is corrupt"):
        ledger.read_ledger(job_dir)


# ---- writes never leave the job directory through a link planted in it ---------------------
# (found by an attacker's review: a symlink or hard link planted at a cell's or a slot's name
# carried a PNG or a turn number into a file outside the job directory)

LINKS = ["symlink", "hardlink"]


def plant(kind: str, at: Path, victim: Path) -> None:
    if kind == "symlink":
        at.symlink_to(victim)
    else:
        os.link(victim, at)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "victim.txt"
    path.write_text("VICTIM\n")
    return path


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    return jobdir.open_job_dir(tmp_path, "job-links")


@pytest.mark.parametrize("kind", LINKS)
def test_write_new_replaces_a_planted_link_and_never_writes_through_it(
    kind: str, job_dir: Path, victim: Path
) -> None:
    cell = job_dir / f"{names.CELL_PREFIX}a_v000.mp4.png"
    plant(kind, cell, victim)
    jobdir.write_new(cell, b"PNG")
    assert victim.read_text() == "VICTIM\n"
    assert not cell.is_symlink() and cell.read_bytes() == b"PNG"


@pytest.mark.parametrize("kind", LINKS)
def test_an_atomic_write_never_writes_through_a_link_at_its_scratch_name(
    kind: str, job_dir: Path, victim: Path
) -> None:
    plant(kind, job_dir / names.atomic_temp_name("contact-sheet.png"), victim)
    jobdir.write_file_atomic(job_dir, "contact-sheet.png", b"PNG")
    assert victim.read_text() == "VICTIM\n"
    assert (job_dir / "contact-sheet.png").read_bytes() == b"PNG"


@pytest.mark.parametrize("kind", LINKS)
def test_open_own_refuses_a_link_and_the_ledger_and_the_slot_turn_write_nothing_through_one(
    kind: str, job_dir: Path, victim: Path
) -> None:
    from varia.job_slots import JobSlots

    plant(kind, job_dir / names.LEDGER_NAME, victim)
    with pytest.raises(OSError):
        jobdir.open_own(job_dir / names.LEDGER_NAME, os.O_RDWR)
    result = RenderResult(input_index=0, variation=0, path="a_v000.mp4", bytes=1, duration_s=1)
    with pytest.raises(OSError):
        ledger.append_ledger(job_dir, [result])
    plant(kind, job_dir / names.slot_turn_name(1), victim)
    JobSlots().end_turn(job_dir, 1, 15)  # logged, not raised: the render's own error says it
    assert victim.read_text() == "VICTIM\n"


def test_a_job_id_naming_a_file_in_output_dir_is_refused_as_a_bad_request(tmp_path: Path) -> None:
    """Typed like every job-directory conflict (`BadRequest`, not `BadInput`), and the message
    says a file is in the way, not a directory; the file is untouched."""
    (tmp_path / "clip_v000.mp4").write_bytes(b"an output")
    with pytest.raises(jobdir.JobDirTaken, match="taken by a file"):
        jobdir.open_job_dir(tmp_path, "clip_v000.mp4", "run-1")
    assert (tmp_path / "clip_v000.mp4").read_bytes() == b"an output"


def test_a_job_whose_paths_would_be_too_long_is_refused_before_anything(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 250) / ("e" * 250)
    job_dir = deep / "job-1"
    jobdir.check_path_lengths(job_dir, ["clip"], 3)  # short enough
    very = Path("/" + "/".join(["x" * 250] * 16)) / "job-1"  # 4,022 bytes: fits itself
    with pytest.raises(jobdir.PathTooLong, match="is too long: the job would write paths of"):
        jobdir.check_path_lengths(very, ["a-longer-clip-name" * 4], 3)  # its records do not
    assert errors.confinement_failure(jobdir.PathTooLong("x")).type == errors.BAD_REQUEST
