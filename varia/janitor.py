"""The janitor: closed jobs that never wrote a manifest (terminated, timed out) get cleaned up.

A terminated or timed-out `VariationJob` runs no cleanup of its own. The janitor lists such
executions (visibility API), reads each one's job directory and completion record from its
history (the request, the prepare result, the finished renders) and the job's ledger, keeps
every whole output, and runs the job's own confined cleanup: only names the job could have
created are deleted, and the manifest says `terminated` (or `timed_out`).

It never touches a directory that has a manifest of this run (or of a later one), lacks
varia's marker for that job, lies outside the allowed output roots, or belongs to a job id
that runs again. A manifest an earlier run of the chain wrote (the run was reset after it
ended) does not count: the run is swept, keeping what that manifest lists while it is still
that file (`varia.cleanup`). Runs closed less than `VARIA_JANITOR_GRACE` seconds ago wait for
the next sweep, so a render whose heartbeat has not yet learnt that its workflow is gone has
stopped first.

Just under 400 lines: listing, reading a history back into a completion record and the sweep
are one procedure, each step used only by the next.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from varia import jobdir, ledger, media, names
from varia.config import Settings
from varia.job_slots import slots_in_use
from varia.manifest_origin import ManifestOrigin, manifest_origin, written_earlier
from varia.models import CleanupRequest, FinalState, JobCarry, JobRequest, MediaInfo, RenderResult
from varia.recipes import default_seed, make_recipe, output_name, output_stems

CLOSED_WITHOUT_CLEANUP: dict[WorkflowExecutionStatus, FinalState] = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}
HAS_MANIFEST = "it has a manifest already"
LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""The SDK's marker of a finished local activity (varia's: search attributes, stop queues;
prepare and cleanup in runs with patch "local-edges")."""
SEED_PATCHES = {names.DEFAULT_SEED_PATCH, *names.UMBRELLA_PATCHES}
"""A run that recorded one of these derived a missing seed from its job id (`run_seed`)."""
SCAN_LIMIT = 1000
"""Closed executions one sweep looks at (newest first); the next sweep sees the rest."""


class JanitorRequest(BaseModel):
    """Options of one sweep; unset ones come from the worker's settings."""

    grace_s: float | None = None
    lookback_h: float | None = None


class SweptJob(BaseModel):
    """What the janitor did with one closed execution."""

    job_id: str
    run_id: str
    job_dir: str | None = None
    action: Literal["swept", "skipped"]
    reason: str = ""
    state: FinalState | None = None
    kept: int = 0
    removed: int = 0


class JanitorReport(BaseModel):
    """The result of one sweep."""

    examined: int = 0
    already_clean: int = Field(
        default=0, description="Closed runs that have a manifest (their own, or a later run's)."
    )
    swept: list[SweptJob] = Field(default_factory=list)
    skipped: list[SweptJob] = Field(default_factory=list)


CLOSED_UNCLEANED = (
    f"WorkflowType = '{names.WORKFLOW_TYPE}' AND ExecutionStatus IN ('Terminated', 'TimedOut')"
)
"""The visibility filter of `VariationJob` runs that closed without their own cleanup."""


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def candidates_query(now: datetime, grace_s: float, lookback_h: float) -> str:
    """Closed `VariationJob` runs that ran no cleanup, closed within the lookback window."""
    newest, oldest = now - timedelta(seconds=grace_s), now - timedelta(hours=lookback_h)
    window = f"CloseTime <= '{_stamp(newest)}' AND CloseTime >= '{_stamp(oldest)}'"
    return f"{CLOSED_UNCLEANED} AND {window}"


def in_grace_query(now: datetime, grace_s: float) -> str:
    """The runs `candidates_query` leaves for later: closed without cleanup within the grace."""
    return f"{CLOSED_UNCLEANED} AND CloseTime > '{_stamp(now - timedelta(seconds=grace_s))}'"


@dataclass
class ClosedRun:
    """What a closed run's history says about its job."""

    request: JobRequest | None = None
    carry: JobCarry | None = None
    media: list[MediaInfo] = field(default_factory=list)
    results: list[RenderResult] = field(default_factory=list)
    failed: int = 0
    reason: str = ""
    chain: str | None = None
    seed_patched: bool = False  # the run derived a missing seed from the job id


def _json(payloads: Any) -> list[Any]:
    """The payloads' values (an activity that returned None has a `binary/null` one)."""
    return [
        None if payload.metadata.get("encoding") == b"binary/null" else json.loads(payload.data)
        for payload in payloads
    ]


def read_history(events: list[HistoryEvent]) -> ClosedRun:
    """The request, carry, media and finished renders recorded in one run's history (pure)."""
    run = ClosedRun()
    scheduled: dict[int, str] = {}
    for event in events:
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            run.chain = started.first_execution_run_id or None
            args = _json(started.input.payloads)
            if args and isinstance(args[0], dict):
                run.request = JobRequest.model_validate(args[0], strict=False)  # as it ran
            if len(args) > 1 and isinstance(args[1], dict):
                run.carry = JobCarry.model_validate(args[1])
                run.media, run.failed = run.carry.media, run.carry.failed
        elif event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            kind = scheduled.get(done.scheduled_event_id)
            values = _json(done.result.payloads)
            if kind == names.PREPARE and values and values[0]:
                run.media = [MediaInfo.model_validate(m) for m in values[0]["media"]]
            elif kind == names.RENDER and values and values[0]:
                run.results.append(RenderResult.model_validate(values[0]))
        elif event.HasField("activity_task_failed_event_attributes"):
            failed = event.activity_task_failed_event_attributes
            if scheduled.get(failed.scheduled_event_id) == names.RENDER:
                run.failed += 1
        elif event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:  # its result may hold any text
                run.media = _prepared_media(marker.details) or run.media
                continue
            run.seed_patched = run.seed_patched or bool(_patch_ids(marker.details) & SEED_PATCHES)
        elif event.HasField("workflow_execution_terminated_event_attributes"):
            run.reason = event.workflow_execution_terminated_event_attributes.reason
    return run


def _patch_ids(details: Any) -> set[str]:
    """The ids a patch marker's details name (`patch-data`: `{"id": ..., "deprecated": ...}`)."""
    if "patch-data" not in details:
        return set()
    values = _json(details["patch-data"].payloads)
    return {value["id"] for value in values if isinstance(value, dict) and "id" in value}


def _prepared_media(details: Any) -> list[MediaInfo] | None:
    """The media a local prepare (patch "local-edges") returned, from its marker's details
    (`data`: the activity's type; `result`: what it returned); None for any other marker."""
    if "data" not in details or "result" not in details:
        return None
    data = _json(details["data"].payloads)
    if not data or not isinstance(data[0], dict) or data[0].get("activity_type") != names.PREPARE:
        return None
    values = _json(details["result"].payloads)
    if not values or not values[0]:
        return None
    return [MediaInfo.model_validate(m) for m in values[0]["media"]]


def run_seed(job_id: str, run: ClosedRun) -> int:
    """The seed the run rendered with (as the workflow derives it when the request has none)."""
    assert run.request is not None
    if run.request.seed is not None:
        return run.request.seed
    return default_seed(job_id) if run.seed_patched else 0


def _whole_extras(
    job_id: str, job_dir: Path, run: ClosedRun, known: set[tuple[int, int]]
) -> list[RenderResult]:
    """Outputs in place whose completion never reached the history (finished during the
    terminate): a final name only ever holds a checked file, so check it again and keep it."""
    assert run.request is not None
    request, found = run.request, []
    for input_index, stem in enumerate(output_stems(request.inputs)):
        if input_index >= len(run.media):
            break
        for variation in range(request.variations):
            path = job_dir / output_name(stem, variation, request.variations)
            if (input_index, variation) in known or path.is_symlink() or not path.is_file():
                continue
            info = run.media[input_index]
            recipe = make_recipe(run_seed(job_id, run), input_index, variation)
            expected = info.duration_s / recipe.speed
            try:
                duration = media.check_output(str(path), expected, max(0.1, 3.0 / info.fps))
            except media.MediaError:
                continue  # not whole after all: cleanup removes it (it is the job's own name)
            found.append(
                RenderResult(
                    input_index=input_index,
                    variation=variation,
                    path=path.name,
                    bytes=path.stat().st_size,
                    duration_s=round(duration, 3),
                )
            )
    return found


def sweep_run(
    job_id: str,
    run_id: str,
    run: ClosedRun,
    state: FinalState,
    settings: Settings,
    stale: ManifestOrigin | None = None,
) -> SweptJob:
    """Clean one closed run's job directory and write its manifest, or say why not.

    A manifest in the directory stops it unless it is still `stale`: one an earlier run of
    the chain wrote (`written_earlier`), which the new manifest replaces."""
    from varia.cleanup import clean_up_job  # the job's own cleanup (heavy import: lazily)

    def skipped(reason: str, job_dir: Path | None = None) -> SweptJob:
        where = str(job_dir) if job_dir else None
        return SweptJob(
            job_id=job_id, run_id=run_id, job_dir=where, action="skipped", reason=reason
        )

    if run.request is None:
        return skipped("its history holds no request")
    try:
        output_dir = jobdir.confine(
            run.request.output_dir, settings.allowed_output_roots, "output_dir"
        )
    except jobdir.ConfinementError as err:
        return skipped(str(err))
    job_dir = output_dir / job_id
    if job_dir.is_symlink() or not job_dir.is_dir():
        return skipped("no job directory (nothing was created)", job_dir)
    if manifest_origin(job_dir) not in (None, stale):
        return skipped(HAS_MANIFEST, job_dir)
    marker = jobdir.read_marker(job_dir)
    if marker is None or marker.job_id != job_id:
        return skipped("its marker does not name this job (not varia's, or another job's)", job_dir)
    if marker.chain is not None and run.chain is not None and marker.chain != run.chain:
        return skipped(f"its marker names another run chain ({marker.chain})", job_dir)
    if busy := slots_in_use(job_dir):  # its partial files are still being written
        return skipped(
            f"a render still runs FFmpeg in it ({busy[0]} is held); a later sweep cleans it",
            job_dir,
        )
    results = {(r.input_index, r.variation): r for r in run.results}
    if run.carry is not None:
        for earlier in ledger.read_ledger(job_dir):
            results.setdefault((earlier.input_index, earlier.variation), earlier)
    for extra in _whole_extras(job_id, job_dir, run, set(results)):
        results[(extra.input_index, extra.variation)] = extra
    how = "terminated" if state == "terminated" else "timed out"
    why = f" ({run.reason})" if run.reason else ""
    try:
        result = clean_up_job(
            CleanupRequest(
                job_id=job_id,
                job_dir=str(job_dir),
                state=state,
                inputs=run.request.inputs,
                stems=output_stems(run.request.inputs),
                variations=run.request.variations,
                seed=run_seed(job_id, run),
                results=sorted(results.values(), key=lambda r: (r.input_index, r.variation)),
                failed=run.failed,
                errors=[f"the workflow was {how}{why}; cleaned up by the janitor"],
                chain=run.chain,
                run_id=run_id,
            )
        )
    except ApplicationError as err:  # one directory it cannot clean stops no other sweep
        return skipped(f"its cleanup failed: {err}", job_dir)
    return SweptJob(
        job_id=job_id,
        run_id=run_id,
        job_dir=str(job_dir),
        action="swept",
        state=state,
        kept=result.completed,
        removed=result.removed,
    )


async def _runs_again(client: Client, job_id: str) -> bool:
    """Whether the job id's latest execution is running (its directory may be in use)."""
    description = await client.get_workflow_handle(job_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING


async def _run_started(client: Client, job_id: str, run_id: str) -> datetime | None:
    """When run `run_id` of the job started; None if the server no longer knows it."""
    try:
        description = await client.get_workflow_handle(job_id, run_id=run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.start_time


async def _is_earlier(client: Client, execution: WorkflowExecution, origin: ManifestOrigin) -> bool:
    """Whether an earlier run of the chain wrote the manifest (`written_earlier`)."""
    started = None
    if origin.run_id not in (None, execution.run_id):
        started = await _run_started(client, execution.id, origin.run_id)
    return written_earlier(origin, execution.run_id, execution.start_time, started)


async def _sweep_execution(
    client: Client, settings: Settings, execution: WorkflowExecution
) -> SweptJob:
    state = CLOSED_WITHOUT_CLEANUP[execution.status] if execution.status else "terminated"
    if await _runs_again(client, execution.id):
        return SweptJob(
            job_id=execution.id,
            run_id=execution.run_id,
            action="skipped",
            reason="the job id runs again: its directory may be in use",
        )
    handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
    stale = None
    async for first in handle.fetch_history_events():  # cheap check first: swept already?
        request = read_history([first]).request
        if request is not None:
            job_dir = Path(request.output_dir) / execution.id
            stale = await asyncio.to_thread(manifest_origin, job_dir)
            if stale is not None and not await _is_earlier(client, execution, stale):
                return SweptJob(
                    job_id=execution.id,
                    run_id=execution.run_id,
                    action="skipped",
                    reason=HAS_MANIFEST,
                )
        break
    events = [event async for event in handle.fetch_history_events()]
    run = read_history(events)
    return await asyncio.to_thread(
        sweep_run, execution.id, execution.run_id, run, state, settings, stale
    )


async def sweep_closed_jobs(
    client: Client, settings: Settings, request: JanitorRequest | None = None
) -> JanitorReport:
    """One sweep over recently closed jobs that ran no cleanup."""
    request = request or JanitorRequest()
    grace = settings.janitor_grace_s if request.grace_s is None else request.grace_s
    lookback = settings.janitor_lookback_h if request.lookback_h is None else request.lookback_h
    query = candidates_query(datetime.now(UTC), grace, lookback)
    report = JanitorReport()
    async for execution in client.list_workflows(query, limit=SCAN_LIMIT):
        report.examined += 1
        if activity.in_activity():
            activity.heartbeat(report.examined)
        outcome = await _sweep_execution(client, settings, execution)
        if outcome.action == "swept":
            report.swept.append(outcome)
        elif outcome.reason == HAS_MANIFEST:
            report.already_clean += 1
        else:
            report.skipped.append(outcome)
    if grace > 0:  # closed too recently: say so, so a person who ran it knows why
        now = datetime.now(UTC)
        async for execution in client.list_workflows(in_grace_query(now, grace), limit=SCAN_LIMIT):
            ago = (now - (execution.close_time or now)).total_seconds()
            report.skipped.append(
                SweptJob(
                    job_id=execution.id,
                    run_id=execution.run_id,
                    action="skipped",
                    reason=f"closed {ago:.0f} s ago: swept once its grace of {grace:g} s has "
                    "passed (renders may still be stopping its FFmpeg)",
                )
            )
    return report


class JanitorActivities:
    """The janitor's activity, bound to one worker's settings (roots, grace)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name=names.JANITOR)
    async def sweep(self, request: JanitorRequest) -> JanitorReport:
        """Sweep the closed jobs that ran no cleanup."""
        return await sweep_closed_jobs(activity.client(), self.settings, request)
