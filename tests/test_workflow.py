"""VariationJob end to end: real Temporal dev server, real FFmpeg, tiny generated clips."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import (
    Job,
    assert_manifest_matches_disk,
    processes_mentioning,
    query_progress,
    read_manifest,
    render_task,
    run_job,
    start_job,
    wait_for,
    wait_rendering,
)
from varia import names
from varia.config import Settings
from varia.errors import BAD_INPUT, BAD_REQUEST
from varia.ffmpeg.argv import build_render_argv
from varia.models import MAX_THREADS, JobRequest, MediaInfo
from varia.recipes import make_recipe
from varia.worker import build_worker
from varia.workflows import VariationJob


async def test_completed_job_matches_contract(job: Job, clips: Clips) -> None:
    handle = await job.start([clips.short, clips.silent], 2, seed=11, concurrency=2)
    result = await handle.result()

    assert result.state == "completed"
    assert (result.total, result.completed, result.failed) == (4, 4, 0)
    job_dir = job.dir
    assert result.job_dir == str(job_dir)
    assert result.manifest == str(job_dir / names.MANIFEST_NAME)
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "completed"
    assert manifest["removed"] == []
    assert {(o["input"], o["variation"]) for o in manifest["outputs"]} == {
        (str(clips.short), 0),
        (str(clips.short), 1),
        (str(clips.silent), 0),
        (str(clips.silent), 1),
    }
    for entry in manifest["outputs"]:
        assert (
            entry["recipe"]
            == make_recipe(11, entry["input_index"], entry["variation"]).model_dump()
        )
    progress = await query_progress(handle)  # answers after close
    assert (progress.state, progress.completed, progress.percent) == ("completed", 4, 100.0)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert description.search_attributes.get(names.STATE_ATTRIBUTE) == ["completed"]


def test_same_seed_gives_same_argv(tmp_path: Path) -> None:
    info = MediaInfo(path="/in/a.mp4", duration_s=2, width=320, height=240, fps=25, has_audio=True)

    def argv(seed: int) -> list[str]:
        task = render_task(info, tmp_path, seed=seed, variation=3)
        return build_render_argv("ffmpeg", task, tmp_path / task.temp_name)

    assert argv(5) == argv(5)
    assert argv(5) != argv(6)


async def test_cancel_mid_render_stops_ffmpeg_and_keeps_finished(
    client: Client, paced_worker: Worker, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    # paced: the long render lasts its 20 s, so it surely still runs when the cancel comes (with
    # render-ahead it starts the moment the short one's FFmpeg exits; unpaced it could end first)
    request = JobRequest(
        inputs=[str(clips.short), str(clips.long)],
        variations=1,
        output_dir=str(out_dir),
        concurrency=1,
        threads=1,
    )
    handle = await start_job(client, task_queue, job_id, request)
    job_dir = out_dir / job_id

    async def short_done_and_long_rendering() -> bool:
        progress = await query_progress(handle)
        return progress.completed == 1 and progress.running == 1

    await wait_for(short_done_and_long_rendering, what="first variation done, second running")
    await wait_rendering(client, job_id)
    partial = job_dir / names.temp_name("long_clip_v000.mp4")
    assert partial.exists()
    assert processes_mentioning(str(job_dir))

    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)

    assert processes_mentioning(str(job_dir)) == []
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "cancelled"
    assert [o["path"] for o in manifest["outputs"]] == ["short_v000.mp4"]
    assert not partial.exists()
    assert names.temp_name("long_clip_v000.mp4") in manifest["removed"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert (await query_progress(handle)).state == "cancelled"


def slow_to_stop_ffmpeg(tmp_path: Path, real_ffmpeg: str) -> Path:
    """An FFmpeg stand-in that ignores `q` and SIGTERM and lets the real encode finish."""
    script = tmp_path / "ffmpeg-finishes-anyway"
    script.write_text(
        "#!/bin/bash\n"
        "trap '' TERM INT\n"
        f'setsid {real_ffmpeg} -nostdin "$@" </dev/null &\n'
        "child=$!\n"
        "while kill -0 $child 2>/dev/null; do wait $child; status=$?; done\n"
        "exit $status\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_completion_wins_over_a_cancel_in_flight(
    client: Client, task_queue: str, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    real = Settings().ffmpeg_path()
    settings = Settings(
        TEMPORAL_ADDRESS=client.service_client.config.target_host,
        VARIA_TASK_QUEUE=task_queue,
        VARIA_FFMPEG=str(slow_to_stop_ffmpeg(tmp_path, real)),
        VARIA_STOP_STAGE_TIMEOUT=60,
        VARIA_CANCEL_STAGE_TIMEOUT=60,  # the stop outlasts the encode (a cancel's are short)
    )
    async with build_worker(client, settings):
        request = JobRequest(
            inputs=[str(clips.long)], variations=1, output_dir=str(out_dir), threads=1
        )
        handle = await start_job(client, task_queue, job_id, request)
        await wait_rendering(client, job_id)
        await handle.cancel()
        result = await handle.result()
    assert result.state == "completed"
    assert result.completed == 1
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert manifest["state"] == "completed"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_drain_finishes_running_and_skips_the_rest(
    client: Client, paced_worker: Worker, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    # paced: the first render lasts its 20 s, so the drain surely lands while it runs
    request = JobRequest(inputs=[str(clips.long)], variations=4, output_dir=str(out_dir), threads=1)
    handle = await start_job(client, task_queue, job_id, request)
    await wait_rendering(client, job_id)
    progress = await handle.execute_update(VariationJob.drain)
    assert progress.draining
    result = await handle.result()
    assert result.state == "drained"
    assert result.completed == 1
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert manifest["state"] == "drained"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": []}, "inputs is empty"),
        ({"inputs": ["relative.mp4"]}, "is not an absolute path"),
        ({"variations": 0}, "variations is 0"),
        ({"variations": 10_001}, "variations is 10001"),
        ({"concurrency": 0}, "concurrency is 0"),
        ({"output_dir": "out"}, "output_dir 'out' is not an absolute path"),
        ({"variations": "many"}, "variations: Input should be a valid integer"),
        ({"variations": "2"}, "variations: Input should be a valid integer (got '2')"),
        ({"concurency": 2}, "unknown field 'concurency' (did you mean 'concurrency'?)"),
    ],
)
async def test_bad_request_fails_with_named_error(
    job: Job, clips: Clips, change: dict[str, object], message: str
) -> None:
    request = {**job.request([clips.short], 1), **change}
    handle = await start_job(job.client, job.task_queue, job.id, request)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert message in cause.message
    assert cause.type == BAD_REQUEST
    assert list(job.out_dir.iterdir()) == []


async def test_unsafe_job_id_fails(
    client: Client, worker: Worker, task_queue: str, clips: Clips, out_dir: Path
) -> None:
    request = JobRequest(inputs=[str(clips.short)], variations=1, output_dir=str(out_dir))
    handle = await start_job(client, task_queue, f"-rf-{uuid.uuid4().hex[:6]}", request)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "starts with '-'" in str(failure.value.cause)
    assert list(out_dir.iterdir()) == []


def _bad_inputs(root: Path, clips: Clips) -> dict[str, tuple[Path, str]]:
    root.mkdir(exist_ok=True)
    empty = root / "empty.mp4"
    empty.touch()
    text = root / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    truncated = root / "truncated.mp4"
    truncated.write_bytes(clips.short.read_bytes()[:4000])
    audio_only = root / "tone.m4a"
    import subprocess

    from varia.config import Settings as _S

    subprocess.run(
        [
            _S().ffmpeg_path(),
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
            str(audio_only),
        ],
        check=True,
    )
    return {
        "missing": (root / "missing.mp4", "does not exist"),
        "empty": (empty, "is empty"),
        "not a video": (text, "is not a readable video"),
        "truncated": (truncated, "not a readable video"),
        "no video stream": (audio_only, "has no video stream"),
    }


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "not a video", "truncated", "no video stream"]
)
async def test_bad_input_fails_naming_the_file(
    job: Job, clips: Clips, tmp_path: Path, kind: str
) -> None:
    bad, message = _bad_inputs(tmp_path / "bad", clips)[kind]
    with pytest.raises(WorkflowFailureError) as failure:
        await job.run([clips.short, bad], 1)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == (BAD_INPUT, True)  # not "JobFailed"
    assert str(bad) in cause.message and message in cause.message, cause.message
    assert not cause.message.startswith("BadInput")  # said once, by the type
    manifest = read_manifest(job.dir)
    assert manifest["state"] == "failed"
    assert manifest["outputs"] == []
    assert processes_mentioning(str(job.out_dir)) == []


async def test_an_input_path_ending_in_a_slash_is_refused(job: Job, clips: Clips) -> None:
    """`/x/clip.mp4/` was resolved to the file and rendered, and the manifest named the path
    as given, which opens as ENOTDIR (found by an attacker's review)."""
    given = f"{clips.short}/"
    request = {**job.request([clips.short], 1), "inputs": [given]}
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(job.client, job.task_queue, job.id, request)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == BAD_INPUT
    assert f"input {given!r} ends with '/'" in cause.message, cause.message
    assert read_manifest(job.dir)["outputs"] == []


async def test_continue_as_new_keeps_the_contract(job: Job, clips: Clips) -> None:
    handle = await job.start([clips.short], 5, concurrency=2, chunk_size=2)
    result = await handle.result()
    assert (result.state, result.completed, result.total) == ("completed", 5, 5)
    manifest = assert_manifest_matches_disk(job.dir)
    assert sorted(o["variation"] for o in manifest["outputs"]) == [0, 1, 2, 3, 4]
    runs = [wf async for wf in job.client.list_workflows(f"WorkflowId = '{job.id}'")]
    assert len(runs) >= 3  # 2 + 2 + 1 variations: three runs of one workflow id
    assert (await query_progress(handle)).completed == 5


async def temporal_cli(client: Client, *args: str) -> dict[str, Any]:
    """Run the official `temporal` CLI against the test server; its JSON output, parsed."""
    from varia.server import temporal_binary

    address = client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        address,
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout) if stdout.strip() else {}


async def temporal_cli_job(
    client: Client, verb: str, task_queue: str, job_id: str, request: dict[str, object]
) -> dict[str, Any]:
    """`temporal workflow <verb>` (start or execute) of a `VariationJob` with `request` as JSON,
    as a user of the official CLI would type it."""
    return await temporal_cli(
        client,
        "workflow",
        verb,
        "--type",
        names.WORKFLOW_TYPE,
        "--task-queue",
        task_queue,
        "--workflow-id",
        job_id,
        "--input",
        json.dumps(request),
    )


async def test_started_by_name_with_the_temporal_cli(
    client: Client, worker: Worker, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    request = {"inputs": [str(clips.short)], "variations": 1, "output_dir": str(out_dir), "seed": 3}
    output = await temporal_cli_job(client, "execute", task_queue, job_id, request)
    result = output["result"]
    assert result["state"] == "completed" and result["completed"] == 1
    assert Path(result["manifest"]).is_file()


async def test_temporal_cli_queries_progress_and_cancels(
    client: Client, paced_worker: Worker, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    # paced: the first render lasts its 20 s, so the cancel surely lands while it runs
    request = {"inputs": [str(clips.long)], "variations": 2, "output_dir": str(out_dir)}
    request["threads"] = 1
    await temporal_cli_job(client, "start", task_queue, job_id, request)

    async def progress() -> dict[str, Any] | None:
        answer = await temporal_cli(
            client, "workflow", "query", "--workflow-id", job_id, "--type", names.PROGRESS_QUERY
        )
        value: dict[str, Any] = answer["queryResult"][0]
        return value if value["running"] == 1 else None

    running = await wait_for(progress, what="the progress query to show a running render")
    assert (running["state"], running["total"], running["completed"]) == ("running", 2, 0)
    await wait_rendering(client, job_id)
    await temporal_cli(client, "workflow", "cancel", "--workflow-id", job_id)

    handle = client.get_workflow_handle(job_id)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert manifest["state"] == "cancelled"
    assert processes_mentioning(str(out_dir / job_id)) == []


async def test_a_job_over_the_total_cap_is_refused_before_anything_is_made(
    job: Job, out_dir: Path
) -> None:
    """1,000 inputs of 10,000 variations are each within their bounds, but 10,000,000 outputs
    are not: started by name (no CLI check), prepare refuses it and writes nothing."""
    with pytest.raises(WorkflowFailureError) as failure:
        await job.run([out_dir / "a.mp4"] * 1000, 10_000)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == BAD_REQUEST
    assert "10,000,000 outputs" in cause.message and "several jobs" in cause.message
    assert not job.dir.exists()


@pytest.mark.parametrize("threads", [MAX_THREADS + 1, 2**63])
async def test_a_job_asking_for_absurd_threads_is_refused_before_anything_is_made(
    job: Job, clips: Clips, threads: int
) -> None:
    """FFmpeg's `-threads` is a C int: 2**63 failed every render, five times each, and the job
    only after all of them (found by an attacker's review). Prepare refuses it first."""
    with pytest.raises(WorkflowFailureError) as failure:
        await job.run([clips.short], 1, threads=threads)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == BAD_REQUEST
    assert f"threads is {threads}; it must be from 1 to {MAX_THREADS}" in cause.message
    assert not job.dir.exists()


@pytest.mark.parametrize("allowed", [True, False], ids=["dir-made", "dir-not-allowed"])
async def test_a_job_cancelled_before_any_worker_took_it_ends_with_its_manifest(
    client: Client, settings: Settings, task_queue: str, tmp_path: Path, allowed: bool
) -> None:
    """Cancelled before prepare ran: the job dir is made without probing (the input here does
    not even exist) for the `cancelled` manifest; where no dir may be made, nothing is."""
    out_dir = tmp_path / "out"
    job_id = f"early-{uuid.uuid4().hex[:8]}"
    request = JobRequest(
        inputs=[str(tmp_path / "not-there.mp4")], variations=2, output_dir=str(out_dir)
    )
    handle = await start_job(client, task_queue, job_id, request)
    await handle.cancel()  # no worker polls the queue yet: the job has not started
    roots = [] if allowed else [tmp_path / "elsewhere"]
    async with build_worker(client, settings.model_copy(update={"allowed_output_roots": roots})):
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    if not allowed:
        assert not out_dir.exists()
        return
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert (manifest["state"], manifest["outputs"], manifest["completed"]) == ("cancelled", [], 0)
    assert manifest["total"] == 2
