"""The worker's job log: one line when a job starts and ends, one per render that ends.

A worker interceptor around the activities (not workflow code, so a replay never repeats a
line): prepare's end starts the job, each render's end says its output, outcome and seconds,
cleanup's end closes the job. An expected failure (a non-retryable `ApplicationError`: a bad
input, a full disk) is this one line; `logs.ExpectedFailureFilter` drops the SDK's traceback of
it. Anything unexpected keeps the SDK's traceback after the line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from varia import errors
from varia.models import CleanupRequest, JobResult, PreparedJob, PrepareRequest, RenderTask

log = logging.getLogger("varia.jobs")

INPUTS_SHOWN = 3


class JobLog(Interceptor):
    """Worker interceptor that writes the job log (logger `varia.jobs`)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _JobLogActivity(next)


class _JobLogActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        request = input.args[0] if input.args else None
        began = time.monotonic()
        try:
            result = await super().execute_activity(input)
        except BaseException as err:
            _failed(request, err, time.monotonic() - began)
            raise
        _succeeded(request, result, time.monotonic() - began)
        return result


def _job() -> str:
    return activity.info().workflow_id or "?"


def _inputs(paths: list[str]) -> str:
    shown = ", ".join(paths[:INPUTS_SHOWN])
    more = len(paths) - INPUTS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _succeeded(request: object, result: object, seconds: float) -> None:
    if isinstance(request, PrepareRequest) and isinstance(result, PreparedJob):
        count = f"{request.variations} variation(s) of " if request.variations else ""
        log.info(
            "job %s started: %s%d input(s) (%s) -> %s",
            _job(),
            count,
            len(request.inputs),
            _inputs(request.inputs),
            result.job_dir,
        )
    elif isinstance(request, RenderTask):
        log.info("job %s: %s completed in %.1f s", _job(), request.output_name, seconds)
    elif isinstance(request, CleanupRequest) and isinstance(result, JobResult):
        level = logging.WARNING if result.state == "failed" else logging.INFO
        log.log(  # the reasons of a failure were logged where they happened
            level,
            "job %s %s: %d/%d done, %d failed, manifest %s",
            _job(),
            result.state,
            result.completed,
            result.total,
            result.failed,
            result.manifest,
        )


def _failed(request: object, err: BaseException, seconds: float) -> None:
    if isinstance(err, asyncio.CancelledError | CancelledError):
        if isinstance(request, RenderTask):
            log.info("job %s: %s cancelled after %.1f s", _job(), request.output_name, seconds)
        return
    kind = err.type if isinstance(err, ApplicationError) else None
    if isinstance(request, RenderTask) and kind == errors.STOPPED_FOR_CANCEL:
        log.info("job %s: %s cancelled after %.1f s", _job(), request.output_name, seconds)
        return
    if isinstance(request, RenderTask) and kind == errors.WORKFLOW_GONE:
        log.info(
            "job %s: %s stopped after %.1f s: the job was terminated or timed out",
            *(_job(), request.output_name, seconds),
        )
        return
    if isinstance(request, RenderTask) and kind == errors.WORKER_SHUTDOWN:
        log.info(
            "job %s: %s stopped after %.1f s: the worker is shutting down (retried elsewhere)",
            *(_job(), request.output_name, seconds),
        )
        return
    what = _what_failed(err)
    if isinstance(request, PrepareRequest):
        log.warning("job %s could not start: %s", _job(), what)
    elif isinstance(request, RenderTask):
        log.warning(
            "job %s: %s failed after %.1f s: %s", _job(), request.output_name, seconds, what
        )
    elif isinstance(request, CleanupRequest):
        log.warning("job %s: cleanup failed: %s", _job(), what)


def _what_failed(err: BaseException) -> str:
    """`Type: message`, and whether Temporal retries it."""
    if isinstance(err, ApplicationError):
        kind, message, final = err.type or "ApplicationError", err.message, err.non_retryable
    else:
        kind, message, final = type(err).__name__, str(err), False
    retry = "not retried" if final else f"attempt {activity.info().attempt}"
    return f"{kind}: {message} ({retry})"
