"""Confinement: safe job ids, allow-listed roots, a marker-guarded cleanup, odd input names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from tests.helpers import assert_manifest_matches_disk, failure_text, run_job, start_job
from tests.reliability.conftest import TinyClips
from tests.reliability.support import leftovers
from varia import jobdir, names
from varia.cleanup import clean_up_job
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.models import CleanupRequest, MediaInfo, Recipe, RenderTask
from varia.worker import build_worker


async def _fails(client: Client, task_queue: str, job_id: str, request: dict[str, object]) -> str:
    handle = await start_job(client, task_queue, job_id, request)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    return failure_text(failure.value)


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "-rf", ".."])
async def test_unsafe_job_ids_are_refused(
    client: Client,
    worker: Worker,
    task_queue: str,
    tiny_clips: TinyClips,
    out_dir: Path,
    bad_id: str,
) -> None:
    request = {"inputs": [str(tiny_clips.tiny)], "variations": 1, "output_dir": str(out_dir)}
    message = await _fails(client, task_queue, bad_id, request)
    assert "invalid job id" in message
    assert list(out_dir.iterdir()) == [] and list(out_dir.parent.iterdir()) == [out_dir]


async def test_paths_outside_the_allowed_roots_are_refused(
    client: Client,
    settings: Settings,
    task_queue: str,
    job_id: str,
    tiny_clips: TinyClips,
    tmp_path: Path,
) -> None:
    inputs_root, outputs_root = tmp_path / "in", tmp_path / "out"
    inputs_root.mkdir()
    outputs_root.mkdir()
    allowed = inputs_root / "clip.mp4"
    allowed.write_bytes(tiny_clips.tiny.read_bytes())
    sneaky = inputs_root / "link.mp4"  # inside the root by name, outside once resolved
    sneaky.symlink_to(tiny_clips.tiny)
    confined = settings.model_copy(
        update={"allowed_input_roots": [inputs_root], "allowed_output_roots": [outputs_root]}
    )
    cases = [
        (str(tiny_clips.tiny), str(outputs_root), str(tiny_clips.tiny)),
        (str(sneaky), str(outputs_root), str(sneaky)),
        (str(allowed), str(tmp_path / "elsewhere"), str(tmp_path / "elsewhere")),
    ]
    async with build_worker(client, confined):
        for index, (source, output_dir, named) in enumerate(cases):
            request = {"inputs": [source], "variations": 1, "output_dir": output_dir}
            message = await _fails(client, task_queue, f"{job_id}-{index}", request)
            assert repr(named) in message and "outside the allowed roots" in message, message
        done = await run_job(
            client,
            task_queue,
            f"{job_id}-ok",
            {"inputs": [str(allowed)], "variations": 1, "output_dir": str(outputs_root)},
        )
    assert done.state == "completed"
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in outputs_root.iterdir()) == [f"{job_id}-ok"]


def _cleanup_request(job_dir: Path, job_id: str) -> CleanupRequest:
    return CleanupRequest(
        job_id=job_id,
        job_dir=str(job_dir),
        state="cancelled",
        inputs=["/in/clip.mp4"],
        stems=["clip"],
        variations=2,
        seed=0,
        results=[],
        failed=0,
    )


def test_cleanup_refuses_a_directory_without_the_marker(tmp_path: Path) -> None:
    job_dir = tmp_path / "job-x"
    job_dir.mkdir()
    partial = job_dir / names.temp_name("clip_v000.mp4")  # would be ours, but the dir is not marked
    partial.write_bytes(b"x")
    with pytest.raises(Exception, match="refusing to clean") as refused:
        clean_up_job(_cleanup_request(job_dir, "job-x"))
    assert getattr(refused.value, "non_retryable", False)
    assert partial.exists() and not (job_dir / names.MANIFEST_NAME).exists()


async def test_cleanup_leaves_foreign_entries_alone(
    client: Client,
    settings: Settings,
    job_id: str,
    tiny_clips: TinyClips,
    out_dir: Path,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    # No worker polls yet: the job waits.
    handle = await start_job(
        client,
        settings.task_queue,
        job_id,
        {"inputs": [str(tiny_clips.tiny)], "variations": 1, "output_dir": str(out_dir)},
    )
    chain = handle.first_execution_run_id
    assert chain is not None
    job_dir = jobdir.open_job_dir(out_dir, job_id, chain)  # as if an earlier attempt made it
    (job_dir / "notes.txt").write_text("someone else's")
    (job_dir / "link.mp4").symlink_to(outside)
    (job_dir / names.temp_name("tiny_v001.mp4")).symlink_to(outside)  # an owned name, but a symlink
    (job_dir / "subdir").mkdir()
    (job_dir / "subdir" / "tiny_v000.mp4").write_text("not ours")
    (job_dir / names.temp_name("tiny_v000.mp4")).write_bytes(b"left by a crash")  # ours: removed
    (job_dir / "contact-sheet.png").symlink_to(outside)  # the sheet's name: left, not drawn
    (job_dir / names.MANIFEST_NAME).symlink_to(outside)  # replaced: the job must write its own
    async with build_worker(client, settings):
        result = await handle.result()
    assert result.state == "completed"
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["foreign"] == [  # what is still there, as it was: not the manifest
        names.temp_name("tiny_v001.mp4"),
        "contact-sheet.png",
        "link.mp4",
        "notes.txt",
        "subdir",
    ]
    assert (job_dir / "contact-sheet.png").is_symlink() and manifest["sheets"] == []
    assert any("contact sheet contact-sheet.png" in error for error in manifest["errors"])
    assert not (job_dir / names.MANIFEST_NAME).is_symlink()
    assert outside.read_text() == "keep me"
    assert (job_dir / "notes.txt").read_text() == "someone else's"
    assert (job_dir / "link.mp4").is_symlink() and (
        job_dir / names.temp_name("tiny_v001.mp4")
    ).is_symlink()
    assert (job_dir / "subdir" / "tiny_v000.mp4").read_text() == "not ours"
    assert not (job_dir / names.temp_name("tiny_v000.mp4")).exists()
    marker = json.loads((job_dir / names.MARKER_NAME).read_text())
    assert marker == {"job_id": job_id, "first_execution_run_id": chain}


async def test_odd_input_names_work_through_file_urls(
    client: Client,
    worker: Worker,
    task_queue: str,
    job_id: str,
    tiny_clips: TinyClips,
    out_dir: Path,
) -> None:
    result = await run_job(
        client,
        task_queue,
        job_id,
        {"inputs": [str(tiny_clips.odd)], "variations": 1, "output_dir": str(out_dir)},
    )
    assert result.state == "completed" and result.completed == 1
    job_dir = out_dir / job_id
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["outputs"][0]["input"] == str(tiny_clips.odd)
    assert leftovers(job_dir) == []
    info = MediaInfo(
        path="-i http:evil.mp4", duration_s=1, width=160, height=120, fps=25, has_audio=False
    )
    task = RenderTask(
        job_dir="/jobs/x", input_index=0, variation=0, media=info, recipe=Recipe(), output_name="o"
    )
    argv = build_render_argv("ffmpeg", task, "/jobs/x/-o.part")
    assert argv[argv.index("-i") + 1] == f"file:{Path('-i http:evil.mp4').absolute()}"
    assert argv[-1] == "file:/jobs/x/-o.part"
