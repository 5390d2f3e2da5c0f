"""Patch "local-edges": prepare and cleanup run as local activities, inside workflow tasks.

The job's first renders are scheduled in the workflow task that prepared it, and the job
closes in the task that cleaned it up: two workflow tasks and two activity tasks fewer per
job. A local activity's failure reaches the workflow as an activity's would (`local_step`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from tests.conftest import Clips
from tests.helpers import Job, assert_manifest_matches_disk
from varia import errors, names
from varia.workflow_calls import local_step

TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
TASK_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED


def _local_activity(event: HistoryEvent) -> str | None:
    """The activity type a local activity marker records, else None."""
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != "core_local_activity":
        return None
    return str(json.loads(marker.details["data"].payloads[0].data)["activity_type"])


def _patch_ids(events: list[HistoryEvent]) -> list[str]:
    return [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


async def test_prepare_and_cleanup_run_inside_the_workflow_tasks_around_the_renders(
    job: Job, clips: Clips
) -> None:
    handle = await job.start([clips.short], 2)
    result = await handle.result()
    assert result.state == "completed" and result.completed == 2
    assert_manifest_matches_disk(job.dir)
    events = [event async for event in handle.fetch_history_events()]
    kinds = [event.event_type for event in events]
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == [names.RENDER, names.RENDER]  # no prepare, no finish task
    local = {_local_activity(e): i for i, e in enumerate(events) if _local_activity(e)}
    assert set(local) == {names.SEARCH_ATTRIBUTES, names.PREPARE, names.FINISH}
    # the first workflow task prepared the job and scheduled its renders
    first_render = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    assert kinds[:first_render].count(TASK_COMPLETED) == 1 and local[names.PREPARE] < first_render
    # the task that cleaned up closed the job: no workflow task after the finish marker
    assert TASK_SCHEDULED not in kinds[local[names.FINISH] :]
    assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    assert _patch_ids(events) == [names.UMBRELLA_PATCHES[0]]  # the newest stands for the rest


async def _fails(err: BaseException) -> Any:
    await asyncio.sleep(0)
    raise err


async def test_a_local_steps_failure_is_raised_as_an_activity_error_with_its_cause() -> None:
    """What the workflow reads of a failed step (type, own message, details) is on the cause."""
    bad = ApplicationError("no video", {"job_dir": "/out/j"}, type=errors.BAD_INPUT)
    with pytest.raises(ActivityError) as raised:
        await local_step(_fails(bad), names.PREPARE)
    assert raised.value.cause is bad and raised.value.activity_type == names.PREPARE
    assert errors.error_type(raised.value) == errors.BAD_INPUT
    assert errors.job_dir_from_failure(raised.value) == "/out/j"
    timeout = TimeoutError(
        "took too long", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]
    )
    with pytest.raises(ActivityError) as raised:
        await local_step(_fails(timeout), names.FINISH)
    assert raised.value.cause is timeout


async def test_an_activity_error_and_a_cancel_pass_through_a_local_step_unchanged() -> None:
    already = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="w",
        activity_type=names.PREPARE,
        activity_id="1",
        retry_state=None,
    )
    with pytest.raises(ActivityError) as raised:
        await local_step(_fails(already), names.PREPARE)
    assert raised.value is already
    with pytest.raises(asyncio.CancelledError):
        await local_step(_fails(asyncio.CancelledError()), names.PREPARE)
