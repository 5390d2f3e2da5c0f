"""A job's status as every client command shows it, built in ONE place (`build_status`).

`varia status`, `varia list`, `varia watch` and the outcome of `cancel`/`drain` all pass what
they learnt (the run as Temporal describes or lists it, the live `progress` answer, the facts of
a closed run) through `build_status`, so they agree on state, counts and percent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes

from varia import names
from varia.address import url_host
from varia.client.records import JobStatus, finished_percent
from varia.models import FINAL_STATES, Progress
from varia.search_attributes import VARIA_COMPLETED, VARIA_PERCENT, VARIA_STATE, VARIA_TOTAL

"""The contract's workflow type: clients start and list jobs by this name."""

STATUS_STATES: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}


@dataclass(frozen=True)
class RunView:
    """What Temporal says about a job's latest run (from describe, list, or its close event)."""

    job_id: str
    run_id: str | None
    status: WorkflowExecutionStatus | None
    task_queue: str
    started: datetime | None
    closed_at: datetime | None
    attributes: TypedSearchAttributes

    @classmethod
    def of(cls, execution: WorkflowExecution) -> RunView:
        """The view of a described or listed execution."""
        return cls(
            job_id=execution.id,
            run_id=execution.run_id,
            status=execution.status,
            task_queue=execution.task_queue,
            started=execution.start_time,
            closed_at=execution.close_time,
            attributes=execution.typed_search_attributes,
        )

    @property
    def closed(self) -> bool:
        """Whether the job has ended (a continued run is still the running job)."""
        return self.status not in (
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.CONTINUED_AS_NEW,
            None,
        )

    def closed_as(self, status: WorkflowExecutionStatus, at: datetime | None) -> RunView:
        """This view after the run closed."""
        return replace(self, status=status, closed_at=at)


@dataclass(frozen=True)
class ClosedFacts:
    """What a closed job left: its result or failure, its job directory and manifest."""

    varia_state: str | None = None
    job_dir: str | None = None
    manifest_path: str | None = None
    manifest: dict[str, Any] | None = None
    error: str | None = None
    settled: bool = True
    """False when the close event does not say where the job directory is (cancelled,
    terminated, timed out): the job itself (its `progress` query) or its request must."""
    total: int | None = None
    """Variations in all, from the request (when nothing else says)."""
    began: bool = True
    """False when the run never scheduled an activity: nothing was rendered."""


def job_state(status: WorkflowExecutionStatus | None, varia_state: str | None) -> str:
    """The job state: varia's own word when it agrees with Temporal's status."""
    closed_as = STATUS_STATES.get(status, "unknown") if status else "unknown"
    if status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        return varia_state if varia_state and varia_state not in FINAL_STATES else closed_as
    if closed_as == "completed" and varia_state in ("completed", "drained"):
        return varia_state
    return closed_as


def build_status(
    view: RunView,
    *,
    ui_url: str,
    progress: Progress | None = None,
    facts: ClosedFacts | None = None,
    workers: bool | None = None,
    hint: str | None = None,
) -> JobStatus:
    """The one place a `JobStatus` is made: live progress first, then the closed run's facts,
    then varia's search attributes.

    The percent is the job's weighted percent (finished variations plus the running renders'
    fractions, `varia.percent.weighted_percent`): from the `progress` query while live, else
    the `VariaPercent` the job last upserted, else (no such attribute) the finished variations
    by the same formula. A closed job's is always its finished variations (counted from its
    manifest where there is one): a terminated job's query and attribute still hold the
    percent of the moment it was terminated.
    """
    attrs = view.attributes
    varia_state = (
        (facts.varia_state if facts else None)
        or (progress.state if progress else None)
        or attrs.get(VARIA_STATE)
    )
    status = JobStatus(
        job_id=view.job_id,
        state=job_state(view.status, varia_state),
        closed=view.closed,
        total=attrs.get(VARIA_TOTAL),
        completed=attrs.get(VARIA_COMPLETED),
        task_queue=view.task_queue,
        started=view.started,
        closed_at=view.closed_at,
        workers=None if view.closed else workers,
        hint=None if view.closed else hint,
        ui_url=ui_url,
    )
    if progress is not None:
        status.live = True
        status.total, status.completed = progress.total, progress.completed
        status.failed, status.running = progress.failed, progress.running
        status.percent, status.job_dir = progress.percent, progress.job_dir
        status.draining, status.cancel_requested = progress.draining, progress.cancel_requested
        status.errors = progress.errors
        status.running_variations = [r.output for r in progress.running_variations]
    if facts is not None and view.closed:
        _apply_facts(status, facts)
    if status.percent is None and not view.closed:
        status.percent = attrs.get(VARIA_PERCENT)  # the job's own, as last upserted
    if status.percent is None or view.closed:  # closed: its renders in flight are gone
        status.percent = finished_percent(status.completed, status.failed, status.total)
    return status


def _apply_facts(status: JobStatus, facts: ClosedFacts) -> None:
    status.running, status.running_variations = 0, []
    status.job_dir = facts.job_dir or status.job_dir
    status.manifest = facts.manifest_path
    manifest = facts.manifest or {}
    if facts.manifest is not None:
        status.outputs = len(manifest.get("outputs", []))
    status.total = manifest.get("total", status.total if status.total is not None else facts.total)
    status.completed = manifest.get("completed", status.completed)
    status.failed = manifest.get("failed", status.failed)
    if not facts.began:  # e.g. cancelled before a worker took it: nothing was rendered
        status.completed, status.failed, status.outputs = 0, 0, 0
    status.sheets = [
        str(Path(status.job_dir or "") / entry["path"])
        for entry in manifest.get("sheets", [])
        if isinstance(entry, dict) and isinstance(entry.get("path"), str)
    ]
    status.sheet = status.sheets[0] if status.sheets else None
    quality = manifest.get("quality")
    status.quality = quality if isinstance(quality, dict) else None
    if facts.error:
        status.errors = [facts.error]


def ui_base_url(address: str, ui_url: str | None) -> str:
    """The Web UI's base URL: `VARIA_UI_URL`, else the gRPC host with port + 1000."""
    if ui_url:
        return ui_url.rstrip("/")
    parts = urlsplit(f"//{address}")
    return f"http://{url_host(parts.hostname or 'localhost')}:{(parts.port or 7233) + 1000}"


def ui_link(base: str, namespace: str, job_id: str) -> str:
    """The job's page in the Temporal Web UI."""
    return f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(job_id, safe='')}"


CLOSED_STATUSES: dict[str, str] = {
    "failed": "Failed",
    "cancelled": "Canceled",
    "terminated": "Terminated",
    "timed_out": "TimedOut",
    "completed": "Completed",
    "drained": "Completed",
}
"""Each closed state → the `ExecutionStatus` of the jobs shown in it (`job_state`)."""


def list_query(state: str | None, with_attributes: bool) -> str:
    """The visibility query of `varia list` (latest run of each VariationJob): for a state,
    every job `job_state` may show in it.

    The `ExecutionStatus` alone decides a failed, cancelled, terminated or timed-out job. A
    completed run is `drained` or `completed` by its result, and a running one by its
    `VariaState`, which a job lacks before its first workflow task, or when it ran before the
    namespace had the attribute: those match too (`IS NULL`), and so do running jobs whose
    attribute already says how they end (they show `running`). Where the query cannot tell,
    it matches more than the state; the caller keeps the rows in `state`.
    """
    query = f"WorkflowType = '{names.WORKFLOW_TYPE}' AND ExecutionStatus "
    if state is None:
        return query + "!= 'ContinuedAsNew'"
    query += f"= '{CLOSED_STATUSES.get(state, 'Running')}'"
    if not with_attributes or state in ("failed", "cancelled", "terminated", "timed_out"):
        return query
    attribute = names.STATE_ATTRIBUTE
    if state == "completed":
        shown = f"{attribute} != 'drained'"
    elif state == "running":
        words = ", ".join(f"'{word}'" for word in sorted({"running", *FINAL_STATES}))
        shown = f"{attribute} IN ({words})"
    else:
        shown = f"{attribute} = '{state}'"
    return f"{query} AND ({shown} OR {attribute} IS NULL)"
