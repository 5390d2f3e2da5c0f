"""The worker's job log: a line per job start and end and per render end, at INFO, with the job
id and outcome; an expected failure is one line without a traceback, an unexpected one keeps it."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.conftest import Clips
from tests.helpers import Job, render_task
from varia import errors, joblog, names
from varia.config import Settings
from varia.logs import ExpectedFailureFilter, configure_logging
from varia.models import JobResult, MediaInfo, RenderTask


@pytest.fixture
def worker_log() -> Iterator[io.StringIO]:
    """The root logger set up as `varia worker` does it (text), restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(Settings(VARIA_LOG_FORMAT="text"), stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


async def outcome(
    job: Job, inputs: list[Path], variations: int
) -> JobResult | WorkflowFailureError:
    try:
        return await job.run(inputs, variations)
    except WorkflowFailureError as err:
        return err


def lines_of(stream: io.StringIO, job_id: str) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if job_id in line]


async def test_a_job_logs_its_start_each_render_and_its_end(
    job: Job, clips: Clips, worker_log: io.StringIO
) -> None:
    job_id = job.id
    result = await outcome(job, [clips.short], 2)
    assert isinstance(result, JobResult) and result.state == "completed"
    lines = lines_of(worker_log, job_id)
    assert all(" INFO varia.jobs: " in line for line in lines), lines
    [started] = [line for line in lines if f"job {job_id} started" in line]
    assert f"2 variation(s) of 1 input(s) ({clips.short})" in started
    renders = sorted(line for line in lines if " completed in " in line)
    assert len(renders) == 2
    for variation, line in enumerate(renders):
        assert f"job {job_id}: short_v00{variation}.mp4 completed in " in line
        assert f"variation={variation}" in line  # the job context tail
    [ended] = [line for line in lines if f"job {job_id} completed:" in line]
    assert f"2/2 done, 0 failed, manifest {job.dir / names.MANIFEST_NAME}" in ended


async def test_a_bad_input_is_one_line_naming_the_file_and_the_problem(
    job: Job, tmp_path: Path, worker_log: io.StringIO
) -> None:
    job_id = job.id
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    assert isinstance(await outcome(job, [bad], 2), WorkflowFailureError)
    text = worker_log.getvalue()
    assert "Traceback" not in text and "Completing activity as failed" not in text, text
    [line] = [line for line in text.splitlines() if str(bad) in line]
    assert f"WARNING varia.jobs: job {job_id} could not start: BadInput: input " in line
    assert "not a readable video" in line and "(not retried)" in line
    [ended] = [line for line in lines_of(worker_log, job_id) if f"job {job_id} failed:" in line]
    assert "0/2 done" in ended


async def test_a_bad_request_is_one_line_too(
    job: Job, clips: Clips, worker_log: io.StringIO
) -> None:
    job_id = job.id
    assert isinstance(await outcome(job, [clips.short], 0), WorkflowFailureError)
    text = worker_log.getvalue()
    assert "Traceback" not in text, text
    [line] = lines_of(worker_log, job_id)
    assert f"job {job_id} refused: invalid job request: variations is 0" in line


def failure_record(err: BaseException) -> logging.LogRecord:
    try:
        raise err
    except BaseException:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "temporalio.activity",
        logging.WARNING,
        __file__,
        1,
        "Completing activity as failed",
        None,
        exc_info,
    )
    record.__dict__["__temporal_error_identifier"] = "ActivityFailure"
    return record


@pytest.mark.parametrize(
    ("err", "kept"),
    [
        (
            ApplicationError(
                "input '/a.mp4' is not a readable video", type=errors.BAD_INPUT, non_retryable=True
            ),
            False,
        ),
        (
            ApplicationError("cannot write the output", type=errors.NO_SPACE, non_retryable=True),
            False,
        ),
        (errors.stopped_for_cancel("/a.mp4 variation 1"), False),
        (errors.worker_shutdown("/a.mp4 variation 1: FFmpeg stopped"), False),
        (errors.workflow_gone("/a.mp4 variation 1"), False),
        (ApplicationError("FFmpeg exited with code 1", type=errors.FFMPEG_FAILED), True),
        (KeyError("a bug"), True),
        (RuntimeError("a bug"), True),
    ],
)
def test_only_expected_failures_lose_their_traceback(err: BaseException, kept: bool) -> None:
    assert ExpectedFailureFilter().filter(failure_record(err)) is kept
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "anything", None, None)
    assert ExpectedFailureFilter().filter(other)


@pytest.mark.parametrize(
    ("err", "said"),
    [
        (errors.stopped_for_cancel("/a.mp4 variation 1"), "a_v001.mp4 cancelled after 1.5 s"),
        (
            errors.worker_shutdown("/a.mp4 variation 1: FFmpeg stopped (worker shutting down)"),
            "a_v001.mp4 stopped after 1.5 s: the worker is shutting down (retried elsewhere)",
        ),
        (
            errors.workflow_gone("/a.mp4 variation 1"),
            "a_v001.mp4 stopped after 1.5 s: the job was terminated or timed out",
        ),
    ],
)
def test_a_render_stopped_by_a_pushed_cancel_or_a_shutdown_is_one_info_line(
    err: ApplicationError, said: str, worker_log: io.StringIO, tmp_path: Path
) -> None:
    """Not "failed" at WARNING: a pushed cancel ends a render as `StoppedForCancel`, where the
    heartbeat path's cancel says "cancelled"; a shutdown's render is retried elsewhere."""
    source = MediaInfo(path="/a.mp4", duration_s=1.0, width=64, height=64, fps=25, has_audio=False)
    task = render_task(source, tmp_path, variation=1)

    def end(request: RenderTask, error: BaseException) -> None:
        joblog._failed(request, error, 1.5)  # what the interceptor calls as the activity ends

    ActivityEnvironment().run(end, task, err)
    [line] = worker_log.getvalue().splitlines()
    assert " INFO varia.jobs: " in line and said in line, line
