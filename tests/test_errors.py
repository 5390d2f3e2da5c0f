"""The error types are part of the contract (histories, the workflow's failure, metrics):
their strings never change, and the non-retryable set is what the retry policies use."""

from __future__ import annotations

from varia import errors
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
