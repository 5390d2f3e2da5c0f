"""`Jobs`: the one client of varia's jobs — start, status, list, watch data, cancel, drain, wait.

Connect once (`await Jobs.open(settings)`), then ask. Every RPC failure becomes one of
`varia.client.errors`; every status goes through `varia.client.status.build_status`.

A cancel costs one describe: describe → (already closed? report it) → cancel → wait on the
run's close event (following continue-as-new) → the closed run's facts. A status never waits on
a worker: the `progress` query is asked only while a worker polls the job's task queue;
otherwise the status says so (`hint`).

About 400 lines: one class, one method per client verb; list/stop helpers are the
next split.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from varia import names
from varia.client.closed import (
    CLOSE_STATUSES,
    close_event,
    closed_facts,
    from_history,
    with_job_dir,
)
from varia.client.connection import open_client
from varia.client.errors import ClientProblem, JobClosed, NotPausable, problem
from varia.client.pollers import has_workers, no_worker_hint
from varia.client.records import JobStatus, StopOutcome, stop_outcome
from varia.client.requests import job_details, job_summary, new_job_id
from varia.client.status import (
    RunView,
    build_status,
    list_query,
    ui_base_url,
    ui_link,
)
from varia.client.updates import Taken, send_update, waiting_for_a_worker
from varia.config import Settings
from varia.models import JobRequest, JobResult, Progress, RenderHeartbeat
from varia.recipes import resolve_seed
from varia.search_attributes import registered_search_attributes
from varia.validation import (
    RequestError,
    check_job_id,
    check_request,
    check_threads,
    check_total,
)

Notify = Callable[[str], None]

QUERY_TIMEOUT = timedelta(seconds=2)
"""How long a `progress` query may wait for a busy worker before the status falls back."""

LIST_SCAN_LIMIT = 500
"""Jobs scanned at most (or the limit, if more) when the state filter's query matches more
than the state (no search attributes; jobs without `VariaState`)."""


class Jobs:
    """varia's jobs in one namespace, through one connected client."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client, self.settings = client, settings
        self._ui_base = ui_base_url(settings.temporal_address, settings.ui_url)

    @classmethod
    async def open(cls, settings: Settings) -> Jobs:
        """Connect (raise `ServerUnreachable` with one clear line when the server is down)."""
        return cls(await open_client(settings), settings)

    def ui_link(self, job_id: str) -> str:
        """The job's page in the Web UI."""
        return ui_link(self._ui_base, self.settings.temporal_namespace, job_id)

    def _problem(self, err: RPCError, job_id: str, action: str) -> ClientProblem:
        return problem(
            err,
            job_id,
            namespace=self.settings.temporal_namespace,
            address=self.settings.temporal_address,
            action=action,
        )

    # ---- start -----------------------------------------------------------------------

    async def start(
        self, request: JobRequest, job_id: str | None = None, *, eager: bool = False
    ) -> str:
        """Check the request, start a `VariationJob` by its type name; returns the job id.

        `eager` asks for eager workflow start: the server hands the first workflow task back in
        the start reply to a worker of this very client in this process (the demo, embedded
        use), saving a task-queue round trip; without such a worker it is an ordinary start.
        """
        handle = await self.start_handle(request, job_id, eager=eager)
        return handle.id

    async def start_handle(
        self, request: JobRequest, job_id: str | None = None, *, eager: bool = False
    ) -> WorkflowHandle[Any, JobResult]:
        """`start`, returning the workflow handle (`started_eagerly` reads it)."""
        check_request(request)
        check_total(len(request.inputs), request.variations)
        check_threads(request.threads)
        job_id = job_id or new_job_id()
        check_job_id(job_id)
        # no seed: the one the workflow derives from the job id, so the summary shows it
        request = request.model_copy(update={"seed": resolve_seed(request.seed, job_id)})
        try:
            return await self.client.start_workflow(
                names.WORKFLOW_TYPE,
                request,
                id=job_id,
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=job_summary(request),
                static_details=job_details(request),
                request_eager_start=eager,
                result_type=JobResult,
            )
        except WorkflowAlreadyStartedError:
            raise RequestError(f"a job with id {job_id!r} already exists") from None
        except RPCError as err:
            raise self._problem(err, job_id, "start") from None

    async def result(self, job_id: str) -> JobResult:
        """Wait for the job's result (raises as the workflow failed, was cancelled, …)."""
        handle = self.client.get_workflow_handle(job_id, result_type=JobResult)
        result: JobResult = await handle.result()
        return result

    # ---- what a job is doing ---------------------------------------------------------

    async def describe(self, job_id: str) -> WorkflowExecutionDescription:
        """Describe the job's latest run; raise `JobNotFound` or `ServerUnreachable`."""
        try:
            return await self.client.get_workflow_handle(job_id).describe()
        except RPCError as err:
            raise self._problem(err, job_id, "describe") from None

    async def status(self, job_id: str) -> JobStatus:
        """Everything known about one job (one describe)."""
        return await self.status_of(RunView.of(await self.describe(job_id)))

    async def snapshot(self, job_id: str) -> tuple[JobStatus, dict[str, RenderHeartbeat]]:
        """The job's status and its running renders' heartbeats, from one describe."""
        description = await self.describe(job_id)
        status = await self.status_of(RunView.of(description))
        beats = {} if status.closed else await self._heartbeats(description)
        return status, beats

    async def heartbeats(self, job_id: str) -> dict[str, RenderHeartbeat]:
        """Live heartbeat details of the job's running renders, by activity id."""
        return await self._heartbeats(await self.describe(job_id))

    async def _heartbeats(
        self, description: WorkflowExecutionDescription
    ) -> dict[str, RenderHeartbeat]:
        beats: dict[str, RenderHeartbeat] = {}
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name != names.RENDER:
                continue
            if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                continue
            payloads = list(pending.heartbeat_details.payloads)[-1:]
            if not payloads:
                beats[pending.activity_id] = RenderHeartbeat()
                continue
            [beat] = await self.client.data_converter.decode(payloads, [RenderHeartbeat])
            beats[pending.activity_id] = beat
        return beats

    async def progress(self, job_id: str) -> Progress | None:
        """The `progress` query, or None when no worker answers it in time."""
        try:
            answer: Progress = await self.client.get_workflow_handle(job_id).query(
                names.PROGRESS_QUERY, result_type=Progress, rpc_timeout=QUERY_TIMEOUT
            )
            return answer
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            return None

    async def has_workers(self, task_queue: str) -> bool:
        """Whether a worker polls `task_queue` for workflow tasks."""
        try:
            return await has_workers(self.client, task_queue)
        except RPCError as err:
            raise self._problem(err, "", "task queue check") from None

    async def status_of(
        self, view: RunView, *, close: HistoryEvent | None = None, workers: bool | None = None
    ) -> JobStatus:
        """The status of a run Temporal described or listed (or whose close event we saw)."""
        link = self.ui_link(view.job_id)
        if view.closed:
            try:
                return await self._closed_status(view, close, link)
            except RPCError as err:
                raise self._problem(err, view.job_id, "describe") from None
        if workers is None:
            workers = await self.has_workers(view.task_queue)
        if not workers:
            hint = no_worker_hint(view.task_queue)
            return build_status(view, ui_url=link, workers=False, hint=hint)
        progress = await self.progress(view.job_id)
        return build_status(view, ui_url=link, progress=progress, workers=True)

    async def wait_closed(
        self, job_id: str, view: RunView | None = None, notify: Notify | None = None
    ) -> JobStatus:
        """Wait until the job (following continue-as-new) has closed; then its status."""
        view = view or RunView.of(await self.describe(job_id))
        if notify and not view.closed and not await self.has_workers(view.task_queue):
            notify(
                f"{no_worker_hint(view.task_queue)}: the job closes when one does "
                "(Ctrl-C stops waiting; what was requested stays requested)"
            )
        try:
            close = await close_event(self.client, job_id, wait=True)
        except RPCError as err:
            raise self._problem(err, job_id, "wait") from None
        assert close is not None  # waiting returns only with a close event
        closed = view.closed_as(
            CLOSE_STATUSES[close.event_type], close.event_time.ToDatetime(tzinfo=UTC)
        )
        return await self.status_of(closed, close=close)

    async def _closed_status(
        self, view: RunView, close: HistoryEvent | None, link: str
    ) -> JobStatus:
        """A closed job from its close event and manifest; the `progress` query (which
        answers after close too) only where they leave the job dir or the counts open."""
        facts = await closed_facts(self.client, view, close)
        status = build_status(view, ui_url=link, facts=facts)
        if facts.settled and status.total is not None:
            return status
        workers = await self.has_workers(view.task_queue)
        progress = await self.progress(view.job_id) if workers else None
        if not facts.settled:
            if progress is not None:  # the job says (None: it made no job dir)
                facts = with_job_dir(facts, progress.job_dir, view.run_id)
            else:
                facts = await from_history(self.client, view, facts)
        return build_status(view, ui_url=link, facts=facts, progress=progress)

    # ---- list ------------------------------------------------------------------------

    async def list(self, *, state: str | None = None, limit: int = 20) -> list[JobStatus]:
        """Recent jobs, newest first, optionally only those in `state` (exactly the rows the
        unfiltered list shows in it: the query may match more, those rows are dropped)."""
        try:
            present = await registered_search_attributes(
                self.client, self.settings.temporal_namespace
            )
        except RPCError:
            present = []
        query = list_query(state, names.STATE_ATTRIBUTE in present)
        scan = limit if state is None else max(limit, LIST_SCAN_LIMIT)
        rows: list[JobStatus] = []
        batch: list[WorkflowExecution] = []
        try:
            async for execution in self.client.list_workflows(query, limit=scan):
                batch.append(execution)
                if len(batch) == limit:
                    rows += await self._rows(batch, state)
                    batch = []
                    if len(rows) >= limit:
                        break
        except RPCError as err:
            raise self._problem(err, "", "list") from None
        rows += await self._rows(batch, state)
        rows.sort(key=lambda row: row.started or datetime.min.replace(tzinfo=UTC), reverse=True)
        return rows[:limit]

    async def _rows(
        self, executions: Sequence[WorkflowExecution], state: str | None
    ) -> builtins.list[JobStatus]:
        """The statuses of listed runs (one worker check per task queue), those in `state`."""
        views = [RunView.of(e) for e in executions]
        queues = {v.task_queue for v in views if not v.closed}
        polled = await asyncio.gather(*(self.has_workers(q) for q in queues))
        workers = dict(zip(queues, polled, strict=True))
        rows = await asyncio.gather(
            *(self.status_of(v, workers=workers.get(v.task_queue)) for v in views)
        )
        return [row for row in rows if state is None or row.state == state]

    # ---- cancel and drain ------------------------------------------------------------

    async def cancel(
        self,
        job_id: str,
        *,
        wait: bool = True,
        notify: Notify | None = None,
        taken: Taken | None = None,
    ) -> StopOutcome:
        """Request a cancel (unless the job already closed); if `wait`, report how it closed.
        `taken` hears when the server has the request."""
        return await self._stop("cancel", job_id, wait, notify, taken)

    async def drain(
        self,
        job_id: str,
        *,
        wait: bool = True,
        notify: Notify | None = None,
        taken: Taken | None = None,
    ) -> StopOutcome:
        """Ask the job to start no new variations; if `wait`, report how it closed. The drain
        is an update: it waits for a worker to take it (`taken` hears when one did)."""
        return await self._stop(names.DRAIN_UPDATE, job_id, wait, notify, taken)

    async def _stop(
        self, action: str, job_id: str, wait: bool, notify: Notify | None, taken: Taken | None
    ) -> StopOutcome:
        view = RunView.of(await self.describe(job_id))
        if view.closed:
            return stop_outcome(action, await self.status_of(view), requested=False, already=True)
        if action == names.DRAIN_UPDATE and notify and not await self.has_workers(view.task_queue):
            notify(f"{no_worker_hint(view.task_queue)}: {waiting_for_a_worker(action)}")
        try:
            requested = await self._request(action, job_id, taken)
        except JobClosed:  # it closed between the describe and the request: say how
            final = await self.wait_closed(job_id, view)
            return stop_outcome(action, final, requested=False, already=True)
        if wait:
            final = await self.wait_closed(job_id, view, notify if action == "cancel" else None)
        else:
            final = await self.status_of(view)
        return stop_outcome(action, final, requested=requested, already=False)

    async def _request(self, action: str, job_id: str, taken: Taken | None) -> bool:
        """Send the cancel or the drain; False when the job rejected the drain (finishing)."""
        try:
            if action == "cancel":
                await self.client.get_workflow_handle(job_id).cancel()
                if taken is not None:
                    taken()
            else:
                await send_update(self.client, job_id, names.DRAIN_UPDATE, taken)
        except WorkflowUpdateFailedError:
            return False  # rejected: the job is already finishing; report how it ends
        except RPCError as err:
            raise self._problem(err, job_id, action) from None
        return True

    # ---- pause and resume ------------------------------------------------------------

    async def pause(
        self, job_id: str, *, notify: Notify | None = None, taken: Taken | None = None
    ) -> JobStatus:
        """Pause a job: returns once its renders stopped and it waits in state `paused`."""
        return await self._pause_update(names.PAUSE_UPDATE, job_id, notify, taken)

    async def resume(
        self, job_id: str, *, notify: Notify | None = None, taken: Taken | None = None
    ) -> JobStatus:
        """Resume a paused job where it stopped (stopped variations render again)."""
        return await self._pause_update(names.RESUME_UPDATE, job_id, notify, taken)

    async def _pause_update(
        self, name: str, job_id: str, notify: Notify | None, taken: Taken | None
    ) -> JobStatus:
        """Send the `pause`/`resume` update; raise `NotPausable` when the job refuses it.
        `notify` hears it when no worker polls the job's queue (the update waits for one),
        `taken` when a worker took it."""
        view = RunView.of(await self.describe(job_id))
        if view.closed:
            state = (await self.status_of(view)).state
            raise NotPausable(f"job {job_id} is {state}; there is nothing to {name}")
        if notify and not await self.has_workers(view.task_queue):
            notify(f"{no_worker_hint(view.task_queue)}: {waiting_for_a_worker(name)}")
        try:
            await send_update(self.client, job_id, name, taken)
        except WorkflowUpdateFailedError as err:
            reason = getattr(err.cause, "message", None) or str(err.cause)
            raise NotPausable(f"job {job_id}: {reason}") from None
        except RPCError as err:
            found = self._problem(err, job_id, name)
            if isinstance(found, JobClosed):
                raise NotPausable(f"job {job_id} closed; there is nothing to {name}") from None
            raise found from None
        return await self.status(job_id)


def started_eagerly(handle: WorkflowHandle[Any, Any]) -> bool:
    """True when the server gave the job's first workflow task straight to a local worker."""
    return bool(getattr(handle, "__temporal_eagerly_started", False))
