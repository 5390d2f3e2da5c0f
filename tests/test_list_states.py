"""`varia list --state S` finds exactly the jobs `varia list` shows in state S, in a namespace
of the test's own: jobs run before its search attributes were registered, jobs no worker has
taken yet, and jobs in each other state (a job no worker had taken showed `running` but
`--state running` missed it; `--state completed` missed completed jobs without `VariaState`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateStage

from tests.conftest import Clips
from tests.helpers import paced_ffmpeg, start_by_name, wait_for
from varia import names
from varia.cli.job_commands import LIST_STATES
from varia.client.jobs import Jobs
from varia.client.status import list_query
from varia.config import Settings
from varia.models import Progress
from varia.search_attributes import SEARCH_ATTRIBUTE_NAMES, registered_search_attributes
from varia.worker import build_worker

INDEXED = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
}


@pytest_asyncio.fixture
async def own_client(client: Client) -> AsyncIterator[Client]:
    """A client of a fresh namespace on the dev server, without varia's search attributes."""
    namespace = f"list-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    yield Client(client.service_client, namespace=namespace, data_converter=client.data_converter)


async def register_search_attributes(client: Client) -> None:
    """Register varia's search attributes in the client's namespace, as an operator would."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                name: INDEXED[kind] for name, kind in names.SEARCH_ATTRIBUTE_TYPES.items()
            },
        )
    )

    async def registered() -> bool:
        found = await registered_search_attributes(client, client.namespace)
        return set(found) == set(SEARCH_ATTRIBUTE_NAMES)

    await wait_for(registered, what="the search attributes to be registered")


def test_the_state_queries_match_running_jobs_without_varia_state() -> None:
    for state in ("running", "pending", "paused"):
        query = list_query(state, with_attributes=True)
        assert "ExecutionStatus = 'Running'" in query and "VariaState IS NULL" in query
    completed = list_query("completed", with_attributes=True)
    assert "ExecutionStatus = 'Completed'" in completed and "VariaState IS NULL" in completed


async def test_every_state_filter_finds_the_rows_the_list_shows_in_that_state(
    own_client: Client,
    settings: Settings,
    clips: Clips,
    tmp_path: Path,
) -> None:
    client, out = own_client, tmp_path / "out"
    own = settings.model_copy(
        update={"temporal_namespace": client.namespace, "ffmpeg": str(paced_ffmpeg(tmp_path))}
    )
    queue, nobody = own.task_queue, f"{own.task_queue}-nobody"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clips.short.read_bytes()[:4000])
    ids = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("old-drained", "old-completed")}
    ids |= {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("old-failed", "completed")}
    ids |= {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("running", "paused")}
    ids |= {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("untaken", "terminated")}

    # before the namespace has varia's search attributes: a drain taken in the job's first
    # workflow task (nothing rendered), a completed job and a failed one
    drained = await start_by_name(client, queue, ids["old-drained"], [clips.short], 2, out)
    drain = asyncio.create_task(
        drained.start_update(
            names.DRAIN_UPDATE, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=Progress
        )
    )
    async with build_worker(client, own):
        await drain
        assert (await drained.result()).state == "drained"
        old = await start_by_name(client, queue, ids["old-completed"], [clips.short], 1, out)
        assert (await old.result()).state == "completed"
        failing = await start_by_name(client, queue, ids["old-failed"], [broken], 1, out)
        with pytest.raises(WorkflowFailureError):
            await failing.result()

        await register_search_attributes(client)
        done = await start_by_name(client, queue, ids["completed"], [clips.short], 1, out)
        assert (await done.result()).state == "completed"
        jobs = Jobs(client, own)
        paused = await start_by_name(client, queue, ids["paused"], [clips.long], 3, out)
        assert (await jobs.pause(ids["paused"])).state == "paused"
        running = await start_by_name(client, queue, ids["running"], [clips.long], 3, out)
        untaken = await start_by_name(client, nobody, ids["untaken"], [clips.short], 1, out)
        gone = await start_by_name(client, nobody, ids["terminated"], [clips.short], 1, out)
        await gone.terminate("test: a terminated job")
        try:
            await _wait_listed_as(jobs, ids["running"], "running")
            await _wait_listed_as(jobs, ids["paused"], "paused")
            shown = {row.job_id: row.state for row in await jobs.list(limit=100)}
            assert set(shown) == set(ids.values())
            assert {shown[ids[name]] for name in ("running", "untaken")} == {"running"}
            assert shown[ids["old-drained"]] == "drained"
            assert shown[ids["old-completed"]] == shown[ids["completed"]] == "completed"
            for state in LIST_STATES:
                found = [row.job_id for row in await jobs.list(state=state, limit=100)]
                expected = [job_id for job_id, shown_as in shown.items() if shown_as == state]
                assert sorted(found) == sorted(expected), state
            assert shown == {row.job_id: row.state for row in await jobs.list(limit=100)}
        finally:
            for handle in (running, paused, untaken):
                await handle.terminate("test cleanup")


async def _wait_listed_as(jobs: Jobs, job_id: str, state: str) -> None:
    """Wait until the visibility store (which may lag the job a moment) lists it in `state`."""

    async def listed() -> bool:
        query = f"WorkflowId = '{job_id}' AND {names.STATE_ATTRIBUTE} = '{state}'"
        return bool([e async for e in jobs.client.list_workflows(query)])

    await wait_for(listed, what=f"{job_id} listed as {state}")
