"""varia's errors: their `ApplicationError` types, which are never retried, and how each is made
and recognised.

The type strings are part of the contract (they are in histories, in the workflow's failure and
in the `varia_render_failed_total{reason}` metric): never change one. Classification works on
typed facts (an exception's class, an `errno`, the error type an activity set), never on the
wording of a message; the one exception is FFmpeg, which reports an OS error only as text on
stderr: its markers are derived from the errnos (`os.strerror`), not written by hand.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import TYPE_CHECKING

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    TimeoutError,
    is_cancelled_exception,
)

if TYPE_CHECKING:
    from varia.ffmpeg.runner import FfmpegOutcome
    from varia.jobdir import ConfinementError

BAD_REQUEST = "BadRequest"
"""A request that is invalid, or conflicts with the world: its job directory belongs to an
earlier execution under the same workflow id (not retried)."""
BAD_INPUT = "BadInput"
"""A request or input that can never succeed (not retried)."""
NO_SPACE = "NoSpace"
"""A full, read-only or forbidden disk (not retried; the job stops starting renders)."""
OUTPUT_DIR_UNUSABLE = "OutputDirUnusable"
"""An output_dir that is not a directory or not writable (not retried)."""
LEDGER_CORRUPT = "LedgerCorrupt"
"""A ledger with a corrupt line before its last (not retried: a person looks)."""
STOPPED_FOR_CANCEL = "StoppedForCancel"
"""A render stopped by a pushed cancel or pause (not retried; counted as stopped, not failed)."""
OUT_OF_BOUNDS = "OutOfBounds"
"""No recipe within the requested strength bounds (not retried by the bounded render)."""
WORKER_SHUTDOWN = "WorkerShutdown"
"""The worker shut down under a render (retried elsewhere)."""
STALLED = "Stalled"
"""FFmpeg made no progress for the stall timeout (retried)."""
FFMPEG_FAILED = "FFmpegFailed"
"""FFmpeg exited with an error (retried)."""
OUTPUT_INVALID = "OutputInvalid"
"""The output did not pass the check (retried)."""
JOB_FAILED = "JobFailed"
"""The workflow's failure when variations failed."""
WORKFLOW_GONE = "WorkflowGone"
"""A render stopped because its workflow is gone (terminated or timed out): nobody waits for
its result (benign; the janitor writes the job's manifest)."""
UPDATE_REFUSED = "UpdateRefused"
"""A `pause`, `resume` or `drain` the job cannot take in its state (the message says why);
the job is unchanged, and asking again in the same state is refused again."""

HALTS_JOB = "halts-job"
"""The detail of a render's failure that every other render of the job would meet alike (its
job directory is gone): the job starts no more renders (patch "refuse-alike")."""

NON_RETRYABLE_TYPES = (BAD_INPUT, NO_SPACE, BAD_REQUEST, OUTPUT_DIR_UNUSABLE, LEDGER_CORRUPT)
"""The types the activities' retry policies never retry."""
PREPARE_REFUSALS = (BAD_REQUEST, OUTPUT_DIR_UNUSABLE)
"""Prepare errors that fail the workflow with their own type (nothing was written)."""

WORKER_SHUTDOWN_REASON = "worker shutting down"
"""The stop reason a render gives FFmpeg's run when the worker shuts down."""
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS)
"""Write errors no retry fixes: a full disk or quota, a file over its size limit, a read-only
or forbidden directory."""
_DISK_MARKERS = tuple(os.strerror(code) for code in _DISK_ERRNOS)

# ---- made by activities ------------------------------------------------------------------


def bad_input(message: str, *details: object) -> ApplicationError:
    """A non-retryable `BadInput`."""
    return ApplicationError(message, *details, type=BAD_INPUT, non_retryable=True)


def confinement_failure(err: ConfinementError) -> ApplicationError:
    """The non-retryable error for a refused path or job directory, typed by its class."""
    from varia.jobdir import JobDirGone, JobDirTaken, NameTaken, OutputDirUnusable, PathTooLong

    if isinstance(err, JobDirTaken | PathTooLong):
        kind = BAD_REQUEST
    elif isinstance(err, NameTaken | OutputDirUnusable):
        kind = OUTPUT_DIR_UNUSABLE
    else:
        kind = BAD_INPUT
    details = (HALTS_JOB,) if isinstance(err, JobDirGone) else ()
    return ApplicationError(str(err), *details, type=kind, non_retryable=True)


def ledger_corrupt(err: Exception) -> ApplicationError:
    return ApplicationError(str(err), type=LEDGER_CORRUPT, non_retryable=True)


def write_failure(path: str, err: OSError) -> ApplicationError | None:
    """`NoSpace` for an OS error that no retry fixes (full, read-only, forbidden); else None."""
    if err.errno in _DISK_ERRNOS:
        return ApplicationError(f"cannot write {path!r}: {err}", type=NO_SPACE, non_retryable=True)
    return None


FFMPEG_TAIL_CHARS = 600
"""How much of FFmpeg's error output a failure quotes: its last lines that fit."""


def last_lines(text: str, limit: int) -> str:
    """The last whole lines of `text` that fit in `limit` characters, joined by " | " as one
    line; if even the last line is longer, its end, after "…". A cut never falls mid-word
    ("ing frames to consumers: …")."""
    kept: list[str] = []
    size = 0
    for line in reversed([line.strip() for line in text.splitlines() if line.strip()]):
        cost = len(line) + (3 if kept else 0)
        if size + cost > limit:
            if not kept:
                kept.append("…" + line[len(line) - limit + 1 :])
            break
        kept.append(line)
        size += cost
    return " | ".join(reversed(kept))


def ffmpeg_failure(outcome: FfmpegOutcome, label: str) -> ApplicationError | None:
    """The error of an FFmpeg run that did not succeed (None when it did)."""
    if outcome.stop_reason is not None:
        message = f"{label}: FFmpeg stopped ({outcome.stop_reason}; ended by {outcome.stop_stage})"
        if outcome.stop_reason == WORKER_SHUTDOWN_REASON:
            return worker_shutdown(message)
        return ApplicationError(message, type=STALLED)
    if outcome.returncode == 0:
        return None
    if outcome.returncode == -signal.SIGXFSZ:
        return ApplicationError(
            f"{label}: cannot write the output: it passed this worker's file size limit "
            "(SIGXFSZ; see `ulimit -f` of the worker's environment)",
            type=NO_SPACE,
            non_retryable=True,
        )
    tail = last_lines(outcome.stderr_tail, FFMPEG_TAIL_CHARS) or "(no error output)"
    if any(marker in tail for marker in _DISK_MARKERS):
        return ApplicationError(
            f"{label}: cannot write the output: {tail}", type=NO_SPACE, non_retryable=True
        )
    return ApplicationError(
        f"{label}: FFmpeg exited with code {outcome.returncode}: {tail}", type=FFMPEG_FAILED
    )


def stopped_for_cancel(label: str) -> ApplicationError:
    """A render a pushed cancel (or pause) stopped before the SDK delivered the cancel
    (benign: the SDK logs it at DEBUG, without a traceback; `JobLog` says "cancelled")."""
    return ApplicationError(
        f"{label}: stopped (the job was cancelled or paused)",
        type=STOPPED_FOR_CANCEL,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def workflow_gone(label: str) -> ApplicationError:
    """A render stopped because its workflow is gone: one INFO line, no traceback."""
    return ApplicationError(
        f"{label}: stopped (its job was terminated or timed out)",
        type=WORKFLOW_GONE,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def worker_shutdown(message: str) -> ApplicationError:
    """A render the worker's shutdown stopped: retried elsewhere (benign, as above)."""
    return ApplicationError(message, type=WORKER_SHUTDOWN, category=ApplicationErrorCategory.BENIGN)


# ---- read by the workflow (pure, deterministic) ------------------------------------------


def error_type(err: ActivityError) -> str | None:
    """The type the activity gave its failure (None for timeouts, cancels and the like)."""
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def halts_job(err: ActivityError) -> bool:
    """Whether a render's failure would meet every other render of the job alike (`HALTS_JOB`)."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and HALTS_JOB in cause.details


def counts_as_stopped(err: ActivityError, cancelling: bool) -> bool:
    """Whether a failed render was stopped rather than failed: cancelled, stopped by a push,
    or (while the job cancels) timed out because it did not stop in time."""
    return (
        is_cancelled_exception(err)
        or error_type(err) == STOPPED_FOR_CANCEL
        or (cancelling and isinstance(err.cause, TimeoutError))
    )


def cause_message(err: BaseException) -> str:
    """The innermost message of a Temporal error chain (the activity's own words)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err) or type(err).__name__


def own_message(err: ActivityError) -> str:
    """The activity's message without its type, for a failure the workflow raises again under
    that same type (else the operator reads `BadRequest: BadRequest: …`)."""
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else cause_message(err)


def job_dir_from_failure(err: ActivityError) -> str | None:
    """The job directory a failed prepare had already created, if it says so."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, dict) and isinstance(first.get("job_dir"), str):
            return str(first["job_dir"])
    return None
