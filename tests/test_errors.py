"""The error types are part of the contract (histories, the workflow's failure, metrics):
their strings never change, and the non-retryable set is what the retry policies use."""

from __future__ import annotations

import errno
import os
import signal

from hypothesis import given
from hypothesis import strategies as st

from varia import errors, jobdir
from varia.ffmpeg.runner import FfmpegOutcome
from varia.workflow_calls import IO_RETRY, RENDER_RETRY

REGISTERED = (
    "BAD_REQUEST=BadRequest BAD_INPUT=BadInput NO_SPACE=NoSpace "
    "OUTPUT_DIR_UNUSABLE=OutputDirUnusable LEDGER_CORRUPT=LedgerCorrupt "
    "STOPPED_FOR_CANCEL=StoppedForCancel WORKER_SHUTDOWN=WorkerShutdown STALLED=Stalled "
    "FFMPEG_FAILED=FFmpegFailed OUTPUT_INVALID=OutputInvalid OUT_OF_BOUNDS=OutOfBounds "
    "JOB_FAILED=JobFailed UPDATE_REFUSED=UpdateRefused WORKFLOW_GONE=WorkflowGone"
)


def test_the_registered_error_types() -> None:
    for pair in REGISTERED.split():
        constant, value = pair.split("=")
        assert getattr(errors, constant) == value


def test_retry_policies_never_retry_the_non_retryable_types() -> None:
    for policy in (RENDER_RETRY, IO_RETRY):
        assert set(policy.non_retryable_error_types or []) == set(errors.NON_RETRYABLE_TYPES)


@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=90), max_size=30))
def test_an_ffmpeg_tail_is_whole_lines_that_fit(lines: list[str]) -> None:
    text = "\n".join(lines)
    tail = errors.last_lines(text, 200)
    assert len(tail) <= 200
    whole = [line.strip() for line in text.splitlines() if line.strip()]
    if not whole:
        assert tail == ""
        return
    if len(whole[-1]) > 200:
        assert tail == "…" + whole[-1][-199:]
        return
    kept = [k for k in range(1, len(whole) + 1) if tail == " | ".join(whole[-k:])]
    assert kept, tail  # the last k lines, each whole
    assert kept[-1] == len(whole) or len(" | ".join(whole[-kept[-1] - 1 :])) > 200  # all that fit


def test_a_long_ffmpeg_error_is_cut_at_a_line_not_mid_word() -> None:
    stderr = "\n".join([f"[aac @ 0x55] line {n}: Error while encoding" for n in range(40)])
    stderr += "\nCould not open encoder before EOF"
    tail = errors.last_lines(stderr, 600)
    assert tail.endswith("Could not open encoder before EOF")
    assert tail.startswith("[aac @ 0x55] line ")  # a whole line, not "ing frames to …"


def test_writes_no_retry_fixes_are_no_space_and_not_retried() -> None:
    """A quota, a file size limit (EFBIG; FFmpeg killed by SIGXFSZ under `ulimit -f`) were
    retried five times as generic failures (found by a hostile review)."""
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS):
        failure = errors.write_failure("/out/x.mp4", OSError(code, os.strerror(code)))
        assert failure is not None and failure.type == errors.NO_SPACE and failure.non_retryable
    assert errors.write_failure("/out/x.mp4", OSError(errno.EIO, "I/O error")) is None
    killed = FfmpegOutcome(returncode=-signal.SIGXFSZ, stderr_tail="")
    failure = errors.ffmpeg_failure(killed, "in.mp4 variation 0")
    assert failure is not None and failure.type == errors.NO_SPACE and failure.non_retryable
    assert "file size limit" in failure.message and "ulimit -f" in failure.message
    quota = FfmpegOutcome(1, "av_interleaved_write_frame(): Disk quota exceeded")
    failure = errors.ffmpeg_failure(quota, "in.mp4 variation 0")
    assert failure is not None and failure.type == errors.NO_SPACE


def test_only_a_job_directory_gone_halts_the_job() -> None:
    """Every render of a job meets a deleted job directory alike, so its failure carries
    `HALTS_JOB` (the workflow starts no more renders); a name taken in the directory, or an
    `output_dir` refused at prepare, concern that one render or step only."""
    gone = errors.confinement_failure(jobdir.JobDirGone("the job directory '/o/j' was deleted"))
    assert (gone.type, gone.non_retryable, gone.details) == (
        errors.OUTPUT_DIR_UNUSABLE,
        True,
        (errors.HALTS_JOB,),
    )
    for other in (jobdir.NameTaken("a directory sits at x.mp4"), jobdir.OutputDirUnusable("no")):
        failure = errors.confinement_failure(other)
        assert failure.type == errors.OUTPUT_DIR_UNUSABLE and failure.details == ()
