"""Worker logging: text or JSON lines, with the job's context on every line of an activity.

Inside an activity every record gets the workflow id, run id, activity type and id, attempt,
and for a render the input index and variation (read from its activity id,
`render-<input>-<variation>`). Workflow log lines carry the workflow id the SDK adds.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from varia.config import Settings
from varia.names import parse_render_activity_id

CONTEXT_KEYS = (
    "workflow_id",
    "run_id",
    "activity",
    "activity_id",
    "attempt",
    "input_index",
    "variation",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(varia_context)s"


def job_context() -> dict[str, Any]:
    """The job context of the running activity ({} outside activities)."""
    if not activity.in_activity():
        return {}
    info = activity.info()
    context: dict[str, Any] = {
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "activity": info.activity_type,
        "activity_id": info.activity_id,
        "attempt": info.attempt,
    }
    render = parse_render_activity_id(info.activity_id)
    if render is not None:
        context["input_index"], context["variation"] = render
    return context


class ContextFilter(logging.Filter):
    """Adds the job context to each record (`varia` dict and a `varia_context` text tail)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = job_context()
        workflow = getattr(record, "temporal_workflow", None)
        if not context and isinstance(workflow, dict):
            context = {"workflow_id": workflow.get("workflow_id"), "run_id": workflow.get("run_id")}
        record.varia = context
        tail = " ".join(f"{key}={context[key]}" for key in CONTEXT_KEYS if key in context)
        record.varia_context = f" [{tail}]" if tail else ""
        return True


class ExpectedFailureFilter(logging.Filter):
    """Drops the SDK's "Completing activity as failed" traceback for an expected failure.

    Expected: a non-retryable `ApplicationError` (bad input, full disk), whose message names
    the file and the problem, or a benign one (a render stopped by a pushed cancel or by the
    worker's shutdown); the job log (`varia.joblog`) already said it in one line.
    Anything else keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get("__temporal_error_identifier") != "ActivityFailure":
            return True
        err = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(err, ApplicationError)
            and (err.non_retryable or err.category == ApplicationErrorCategory.BENIGN)
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "varia", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) as text or JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ExpectedFailureFilter())
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # The context goes in fields (JSON) or the `[key=value]` tail (text): keep messages clean.
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
    return handler
