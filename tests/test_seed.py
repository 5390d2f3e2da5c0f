"""The default seed: derived from the job id, resolved once, kept across continue-as-new; jobs
that started before default seeds (seed defaulted to 0) keep 0 when replayed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from tests.conftest import Clips
from tests.helpers import read_manifest, start_job
from tests.histories import HISTORY_DIR, workflow_id
from varia.models import CleanupRequest, RenderTask
from varia.recipes import default_seed, make_recipe
from varia.workflows import VariationJob


class SeedsSeen(Interceptor):
    """Records the renders and cleanups the workflow schedules (replay included)."""

    renders: ClassVar[list[RenderTask]] = []
    finish_seeds: ClassVar[list[int]] = []

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        for arg in input.args:
            if isinstance(arg, CleanupRequest):
                SeedsSeen.finish_seeds.append(arg.seed)
            if isinstance(arg, RenderTask):
                SeedsSeen.renders.append(arg)
        return super().start_activity(input)


async def assert_replays_with_seed(history: WorkflowHistory, seed: int) -> None:
    """Replay `history` with today's code: deterministic, and every plan uses `seed`."""
    SeedsSeen.renders, SeedsSeen.finish_seeds = [], []
    await Replayer(
        workflows=[VariationJob],
        interceptors=[SeedsSeen()],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=pydantic_data_converter,
    ).replay_workflow(history)
    assert SeedsSeen.renders or SeedsSeen.finish_seeds
    assert SeedsSeen.finish_seeds in ([], [seed])
    for task in SeedsSeen.renders:
        assert task.recipe == make_recipe(seed, task.input_index, task.variation)


@pytest.mark.parametrize("run", [1, 2, 3])
async def test_a_seedless_job_from_before_default_seeds_keeps_seed_0(run: int) -> None:
    """The first recording (before default seeds): a seedless job of 3 runs. Its first run's
    input has no seed (it defaulted to 0), the later runs carry `"seed": 0`."""
    path = HISTORY_DIR / f"continue-as-new.run{run}.json"
    text = path.read_text()
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    [request, *_] = [json.loads(base64.b64decode(p["data"])) for p in started["input"]["payloads"]]
    assert request.get("seed") == (None if run == 1 else 0)  # the cases this guards
    history = WorkflowHistory.from_json(workflow_id("continue-as-new"), text)
    await assert_replays_with_seed(history, 0)


async def test_job_without_seed_gets_one_from_its_id_and_keeps_it_in_every_run(
    client: Client, worker: Worker, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    request = {
        "inputs": [str(clips.short)],
        "variations": 2,
        "output_dir": str(out_dir),
        "chunk_size": 1,  # one variation per run: the seed must cross continue-as-new
    }
    handle = await start_job(client, task_queue, job_id, request)
    result = await handle.result()
    expected = default_seed(job_id)
    assert (result.state, result.seed) == ("completed", expected)
    manifest = read_manifest(out_dir / job_id)
    assert manifest["seed"] == expected
    for entry in manifest["outputs"]:
        assert entry["recipe"] == make_recipe(expected, 0, entry["variation"]).model_dump()
    # The later run got the resolved seed in its input (it never derives it again).
    last_run = await client.get_workflow_handle(job_id).fetch_history()
    started = last_run.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id, "expected a continued-as-new run"
    [carried, _carry] = [json.loads(p.data) for p in started.input.payloads]
    assert carried["seed"] == expected
    # Both runs replay deterministically and plan with the derived seed.
    first_run = await client.get_workflow_handle(
        job_id, run_id=started.continued_execution_run_id
    ).fetch_history()
    for history in (first_run, last_run):
        await assert_replays_with_seed(history, expected)
