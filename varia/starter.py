"""Client helpers: start a job, ask for its progress, read its renders' live heartbeats."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from varia.models import JobRequest, JobResult, Progress, RenderHeartbeat
from varia.recipes import resolve_seed
from varia.validation import check_job_id, check_request
from varia.workflows import VariationJob

WORKFLOW_TYPE = "VariationJob"


def new_job_id() -> str:
    """A fresh, sortable job id such as `varia-20261129-161425-3f9a2c`."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"varia-{stamp}-{secrets.token_hex(3)}"


def job_summary(request: JobRequest) -> str:
    """The static summary the Web UI shows for a job."""
    inputs = len(request.inputs)
    return (
        f"{request.variations} variation(s) of {inputs} input(s), seed {request.seed}, "
        f"concurrency {request.concurrency} → {request.output_dir}"
    )


async def start_job(
    client: Client, request: JobRequest, *, task_queue: str, job_id: str | None = None
) -> WorkflowHandle[VariationJob, JobResult]:
    """Check the request, then start a `VariationJob`; returns its handle.

    A request without a seed is started with the one the workflow would derive from the job
    id (`recipes.default_seed`), so the summary shows it; `resolve_seed` tells it to callers.
    """
    check_request(request)
    job_id = job_id or new_job_id()
    check_job_id(job_id)
    request = request.model_copy(update={"seed": resolve_seed(request.seed, job_id)})
    return await client.start_workflow(
        VariationJob.run,
        request,
        id=job_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=job_summary(request),
        static_details=f"inputs: {', '.join(request.inputs)}",
    )


async def query_progress(handle: WorkflowHandle[VariationJob, JobResult]) -> Progress:
    """The job's `progress` query (works while it runs and after it closed)."""
    return await handle.query(VariationJob.progress)


async def render_heartbeats(client: Client, job_id: str) -> dict[str, RenderHeartbeat]:
    """Live heartbeat details of the job's running renders, by activity id."""
    description = await client.get_workflow_handle(job_id).describe()
    beats: dict[str, RenderHeartbeat] = {}
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name != "varia.render":
            continue
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
            continue
        payloads = list(pending.heartbeat_details.payloads)
        if not payloads:
            beats[pending.activity_id] = RenderHeartbeat()
            continue
        [details] = await client.data_converter.decode(payloads[-1:], [RenderHeartbeat])
        beats[pending.activity_id] = details
    return beats
