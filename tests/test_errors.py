"""The error types are part of the contract (histories, the workflow's failure, metrics):
their strings never change, and the non-retryable set is what the retry policies use."""

from __future__ import annotations

from varia import errors
from varia.workflow_calls import IO_RETRY, RENDER_RETRY


def test_the_registered_error_types() -> None:
    assert (errors.BAD_REQUEST, errors.BAD_INPUT, errors.NO_SPACE) == (
        "BadRequest",
        "BadInput",
        "NoSpace",
    )
    assert (errors.OUTPUT_DIR_UNUSABLE, errors.LEDGER_CORRUPT, errors.STOPPED_FOR_CANCEL) == (
        "OutputDirUnusable",
        "LedgerCorrupt",
        "StoppedForCancel",
    )
    assert (errors.WORKER_SHUTDOWN, errors.STALLED, errors.FFMPEG_FAILED) == (
        "WorkerShutdown",
        "Stalled",
        "FFmpegFailed",
    )
    assert (errors.OUTPUT_INVALID, errors.OUT_OF_BOUNDS, errors.JOB_FAILED) == (
        "OutputInvalid",
        "OutOfBounds",
        "JobFailed",
    )


def test_retry_policies_never_retry_the_non_retryable_types() -> None:
    for policy in (RENDER_RETRY, IO_RETRY):
        assert set(policy.non_retryable_error_types or []) == set(errors.NON_RETRYABLE_TYPES)
