"""Terminate leaves nothing behind: the render stops FFmpeg, the janitor cleans up and writes
the manifest; a directory without varia's marker and one whose job id runs again are left alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
    WorkflowFailureError,
    WorkflowHistory,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import (
    Job,
    assert_manifest_matches_disk,
    processes_mentioning,
    render_heartbeats,
    start_job,
    wait_for,
    wait_rendering,
)
from tests.histories import history_files, path_of, workflow_id
from varia import names
from varia.client.jobs import Jobs
from varia.config import Settings
from varia.janitor import (
    ClosedRun,
    JanitorReport,
    JanitorRequest,
    SweptJob,
    candidates_query,
    read_history,
    run_seed,
    sweep_run,
)
from varia.janitor_workflow import ensure_janitor_schedule, schedule_id
from varia.jobdir import open_job_dir
from varia.manifest_origin import ManifestOrigin, manifest_origin, written_earlier
from varia.models import JobRequest, Manifest
from varia.names import JANITOR_WORKFLOW, MANIFEST_NAME, MARKER_NAME
from varia.processes import ProcessIdentity
from varia.server import DevServer
from varia.worker import run_worker


async def run_janitor(client: Client, settings: Settings, grace_s: float = 0) -> JanitorReport:
    """One sweep through the `VariaJanitor` workflow (as the schedule runs it), no grace."""
    report: JanitorReport = await client.execute_workflow(
        JANITOR_WORKFLOW,
        JanitorRequest(grace_s=grace_s),
        id=f"janitor-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        result_type=JanitorReport,
    )
    return report


def entry(report: JanitorReport, job_id: str) -> SweptJob:
    [found] = [e for e in [*report.swept, *report.skipped] if e.job_id == job_id]
    return found


async def ffmpeg_of(client: Client, job_id: str, output: str) -> ProcessIdentity:
    """The FFmpeg of the render of `output`, once it reports progress."""

    async def rendering() -> ProcessIdentity | None:
        for beat in (await render_heartbeats(client, job_id)).values():
            if beat.output == output and beat.pid and beat.pid_create_time and beat.percent > 0:
                return ProcessIdentity(beat.pid, beat.pid_create_time)
        return None

    return await wait_for(rendering, what=f"FFmpeg rendering {output}")


async def test_terminated_job_is_swept_and_its_ffmpeg_stopped(paced_job: Job, clips: Clips) -> None:
    client, settings = paced_job.client, paced_job.settings
    job_id, job_dir = paced_job.id, paced_job.dir
    handle = await paced_job.start([clips.short, clips.long], 1, threads=1)
    await wait_for(lambda: (job_dir / "short_v000.mp4").exists(), what="the first output")
    ffmpeg = await ffmpeg_of(client, job_id, "long_clip_v000.mp4")
    assert (job_dir / names.temp_name("long_clip_v000.mp4")).exists()

    await handle.terminate(reason="operator pressed Terminate")
    # the terminated workflow's render learns from its heartbeat that the workflow is gone
    await wait_for(lambda: not ffmpeg.is_alive(), timeout_s=30, what="FFmpeg to be stopped")
    assert not (job_dir / MANIFEST_NAME).exists()

    # a render (of another worker) that still holds its slot still runs FFmpeg: left alone
    lock = await wait_for(
        lambda: _slot_lock(job_dir / names.slot_lock_name(0)), what="the render to let go"
    )
    try:
        busy = entry(await run_janitor(client, settings), job_id)
    finally:
        os.close(lock)
    assert busy.action == "skipped" and "still runs FFmpeg" in busy.reason
    assert not (job_dir / MANIFEST_NAME).exists()

    report = await run_janitor(client, settings)
    swept = entry(report, job_id)
    assert (swept.action, swept.state, swept.kept) == ("swept", "terminated", 1)
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "terminated"
    assert [o["path"] for o in manifest["outputs"]] == ["short_v000.mp4"]
    assert "operator pressed Terminate" in manifest["errors"][0]
    assert not [p for p in job_dir.iterdir() if names.parse_temp_name(p.name)]
    assert processes_mentioning(job_id) == []
    status = await Jobs(client, settings).status(job_id)  # the percent of what finished
    assert (status.state, status.completed, status.total, status.percent) == (
        "terminated",
        1,
        2,
        50.0,
    )

    # a second sweep leaves the swept job alone
    again = await run_janitor(client, settings)
    assert job_id not in {e.job_id for e in [*again.swept, *again.skipped]}
    assert again.already_clean >= 1


def _slot_lock(path: Path) -> int | None:
    """A descriptor holding the slot's lock, as a render running FFmpeg does; None while the
    job's own render still holds it (never a blocking wait: the worker shares this loop)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def test_janitor_leaves_foreign_and_running_directories_alone(
    client: Client, paced_worker: Worker, settings: Settings, clips: Clips, tmp_path: Path
) -> None:
    # a terminated job whose directory lost varia's marker: not varia's to touch
    foreign_id, rerun_id = f"job-{uuid.uuid4().hex[:8]}", f"job-{uuid.uuid4().hex[:8]}"
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    for path in (first_out, second_out):
        path.mkdir()
    long_job = JobRequest(inputs=[str(clips.long)], variations=1, output_dir=str(first_out))
    foreign = await start_job(client, settings.task_queue, foreign_id, long_job)
    await ffmpeg_of(client, foreign_id, "long_clip_v000.mp4")
    await foreign.terminate()
    foreign_dir = first_out / foreign_id
    (foreign_dir / MARKER_NAME).unlink()
    (foreign_dir / "notes.txt").write_text("someone else's")

    # a terminated job whose id runs again (its directory may be in use)
    rerun = await start_job(client, settings.task_queue, rerun_id, long_job)
    ffmpeg = await ffmpeg_of(client, rerun_id, "long_clip_v000.mp4")
    await rerun.terminate()
    await wait_for(lambda: not ffmpeg.is_alive(), timeout_s=30, what="FFmpeg to be stopped")
    again = long_job.model_copy(update={"output_dir": str(second_out)})
    running = await start_job(client, settings.task_queue, rerun_id, again)
    await wait_rendering(client, rerun_id)
    before = sorted(p.name for p in (first_out / rerun_id).iterdir())

    report = await run_janitor(client, settings)
    assert entry(report, foreign_id).action == "skipped"
    assert "marker" in entry(report, foreign_id).reason
    assert (foreign_dir / "notes.txt").read_text() == "someone else's"
    assert not (foreign_dir / MANIFEST_NAME).exists()
    assert entry(report, rerun_id).action == "skipped"
    assert "runs again" in entry(report, rerun_id).reason
    assert sorted(p.name for p in (first_out / rerun_id).iterdir()) == before
    assert not (second_out / rerun_id / MANIFEST_NAME).exists()

    await running.cancel()
    with pytest.raises(WorkflowFailureError):
        await running.result()


async def test_janitor_schedule_is_created_once_and_follows_the_interval(
    client: Client, settings: Settings
) -> None:
    ident = await ensure_janitor_schedule(client, settings.task_queue, 300)
    assert ident == schedule_id(settings.task_queue)
    assert await ensure_janitor_schedule(client, settings.task_queue, 120) == ident
    handle = client.get_schedule_handle(ident)
    try:
        description = await handle.describe()
        assert description.schedule.spec.intervals[0].every == timedelta(seconds=120)
        action = description.schedule.action
        assert getattr(action, "workflow", None) == JANITOR_WORKFLOW
        assert getattr(action, "task_queue", None) == settings.task_queue
    finally:
        await handle.delete()


def test_candidates_query_names_the_closed_window() -> None:
    query = candidates_query(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 60, 24)
    assert "ExecutionStatus IN ('Terminated', 'TimedOut')" in query
    assert "CloseTime <= '2026-01-02T03:03:05.000000Z'" in query
    assert "CloseTime >= '2026-01-01T03:04:05.000000Z'" in query


RESET_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
"""When the terminated run started (a reset, say)."""
BEFORE, AFTER = RESET_AT - timedelta(seconds=1), RESET_AT + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("origin", "origin_started", "earlier"),
    [
        (ManifestOrigin("run-2", BEFORE), None, False),  # its own (a sweep's), whatever the time
        (ManifestOrigin("run-2", AFTER), None, False),  # its own: a second sweep changes nothing
        (ManifestOrigin("run-1", AFTER), BEFORE, True),  # the run it was reset from
        (ManifestOrigin("run-1", BEFORE), None, True),  # a run the server no longer knows
        (ManifestOrigin("run-3", AFTER), AFTER, False),  # a later run's: it supersedes this one
        (ManifestOrigin(None, BEFORE), None, True),  # older varia's, written before the run
        (ManifestOrigin(None, AFTER), None, False),  # older varia's, written since: left alone
    ],
)
def test_whose_manifest_it_is(
    origin: ManifestOrigin, origin_started: datetime | None, earlier: bool
) -> None:
    """Only a manifest written for an earlier run of the chain leaves the run to sweep."""
    assert written_earlier(origin, "run-2", RESET_AT, origin_started) is earlier


def test_a_manifest_names_its_run_and_an_older_one_is_dated_by_its_file(tmp_path: Path) -> None:
    assert manifest_origin(tmp_path) is None
    manifest = Manifest(
        job_id="j", state="failed", run_id="run-1", seed=0, total=1, completed=0, failed=1,
        outputs=[], removed=[],
    )  # fmt: skip
    (tmp_path / MANIFEST_NAME).write_text(manifest.model_dump_json())
    os.utime(tmp_path / MANIFEST_NAME, (BEFORE.timestamp(), BEFORE.timestamp()))
    assert manifest_origin(tmp_path) == ManifestOrigin("run-1", BEFORE)
    older = manifest.model_dump(exclude={"run_id"})  # as varia wrote it before runs were named
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(older))
    os.utime(tmp_path / MANIFEST_NAME, (AFTER.timestamp(), AFTER.timestamp()))
    assert manifest_origin(tmp_path) == ManifestOrigin(None, AFTER)
    (tmp_path / MANIFEST_NAME).write_text("{not json")  # unreadable: dated by its file too
    os.utime(tmp_path / MANIFEST_NAME, (BEFORE.timestamp(), BEFORE.timestamp()))
    assert manifest_origin(tmp_path) == ManifestOrigin(None, BEFORE)


def test_a_job_it_cannot_clean_is_skipped_with_the_reason_not_the_whole_sweep(
    tmp_path: Path,
) -> None:
    """A directory at the manifest's name, older than the run, is no manifest of the run; the
    cleanup cannot write one there, and says so for this job only (it failed the sweep)."""
    job_dir = open_job_dir(tmp_path, "j")
    (job_dir / MANIFEST_NAME).mkdir()
    os.utime(job_dir / MANIFEST_NAME, (BEFORE.timestamp(), BEFORE.timestamp()))
    stale = manifest_origin(job_dir)
    assert stale is not None and written_earlier(stale, "run-2", RESET_AT, None)
    request = JobRequest(inputs=["/in/a.mp4"], variations=1, output_dir=str(tmp_path), seed=0)

    swept = sweep_run("j", "run-2", ClosedRun(request=request), "terminated", Settings(), stale)

    assert swept.action == "skipped" and "its cleanup failed" in swept.reason
    assert (job_dir / MANIFEST_NAME).is_dir()  # not varia's: left as it was


NO_PROBE = {"failed-bad-input", "refused-request", "cancelled-before-start"}
"""Paths whose prepare probed no input: it failed, never ran, or only made the job dir."""
FIRST_RUNS_THAT_PREPARED = [
    history
    for history in history_files()
    if (path_of(history) not in NO_PROBE and ".run" not in history.name)
    or history.name.endswith(".run1.json")
]


@pytest.mark.parametrize("history_file", FIRST_RUNS_THAT_PREPARED, ids=lambda path: path.name)
def test_janitor_reads_what_prepare_probed_from_every_recorded_history(
    history_file: Path,
) -> None:
    """Prepare's media (to keep a whole output the history never heard of) are read back from
    every recorded release's history, including runs with a record activity (it returns None)."""
    events = WorkflowHistory.from_json(
        workflow_id(path_of(history_file)), json.loads(history_file.read_text())
    ).events
    run = read_history(events)
    assert run.request is not None
    assert len(run.media) == len(run.request.inputs)
    assert all(info.duration_s > 0 and info.fps > 0 for info in run.media)


def _render_seeds(events: list[HistoryEvent]) -> set[int]:
    """The job seeds the run's scheduled renders carry (renders of older releases carry none)."""
    seeds = set()
    for event in events:
        attrs = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and (
            attrs.activity_type.name == names.RENDER
        ):
            task = json.loads(attrs.input.payloads[0].data)
            if task.get("seed") is not None:
                seeds.add(task["seed"])
    return seeds


@pytest.mark.parametrize("history_file", history_files(), ids=lambda path: path.name)
def test_janitor_derives_the_seed_each_recorded_run_rendered_with(history_file: Path) -> None:
    """The janitor rebuilds a terminated run's recipes (to check an output the history never
    heard of) from the seed the run used: a request without one took `default_seed(job id)`
    in runs with the "default-seed" patch, which newer runs no longer mark on their own (an
    umbrella patch stands for it). A wrong seed expects the wrong duration: the janitor took a
    whole output for a torn one and cleanup deleted it."""
    job_id = workflow_id(path_of(history_file))
    events = WorkflowHistory.from_json(job_id, json.loads(history_file.read_text())).events
    run = read_history(list(events))
    seeds = _render_seeds(list(events))
    if run.request is None or not seeds:
        pytest.skip("no render in this history carries its seed")
    assert seeds == {run_seed(job_id, run)}


async def test_server_creates_the_janitor_schedule_without_a_converter_warning(
    tmp_path: Path,
) -> None:
    """`varia server` creates the schedule as it starts: its argument, a pydantic model, goes
    through varia's converter (the SDK's default one printed a UserWarning to a newcomer)."""
    queue = f"janitor-{uuid.uuid4().hex[:6]}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with DevServer(
            ui=False, log_path=tmp_path / "temporal.log", janitor_task_queue=queue
        ) as server:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            description = await client.get_schedule_handle(schedule_id(queue)).describe()
    assert [str(w.message) for w in caught if "onverter" in str(w.message)] == []
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    [argument] = await client.data_converter.decode(action.args, [JanitorRequest])
    assert argument == JanitorRequest()


async def test_a_worker_makes_its_queues_janitor_schedule_and_keeps_an_operators(
    client: Client, settings: Settings
) -> None:
    """Every worker makes sure the schedule of its own task queue exists: one started on a
    queue other than the one `varia server` made a schedule for had none, and its terminated
    jobs waited for a `varia janitor` by hand. An existing schedule keeps its interval."""
    queue = settings.task_queue
    handle = client.get_schedule_handle(schedule_id(queue))
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        description = await wait_for(
            lambda: _described(handle), what="the queue's janitor schedule", timeout_s=60
        )
    finally:
        stop.set()
        await running
    try:
        every = description.schedule.spec.intervals[0].every
        assert every == timedelta(seconds=settings.janitor_interval_s)
        assert getattr(description.schedule.action, "task_queue", None) == queue

        await ensure_janitor_schedule(client, queue, 77)  # an operator's own interval
        await ensure_janitor_schedule(client, queue, 300, keep_existing=True)  # a worker starts
        kept = (await handle.describe()).schedule.spec.intervals[0].every
        assert kept == timedelta(seconds=77)
    finally:
        await handle.delete()


async def _described(handle: ScheduleHandle) -> ScheduleDescription | None:
    try:
        return await handle.describe()
    except RPCError:
        return None  # not there yet


async def test_a_job_within_the_grace_is_named_with_the_reason(
    client: Client, worker: Worker, settings: Settings, clips: Clips, out_dir: Path
) -> None:
    """`varia janitor` right after a terminate names the job it leaves for later, and why (it
    said nothing about it: "0 swept" and the job nowhere)."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    request = JobRequest(inputs=[str(clips.short)], variations=1, output_dir=str(out_dir))
    handle = await start_job(client, f"{settings.task_queue}-nobody", job_id, request)
    await handle.terminate(reason="test")

    async def named() -> SweptJob | None:
        report = await run_janitor(client, settings, grace_s=3600)
        return next((e for e in report.skipped if e.job_id == job_id), None)

    found = await wait_for(named, what="the janitor to list the terminated job")
    assert found.action == "skipped" and "grace of 3600 s" in found.reason
