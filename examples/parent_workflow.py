"""A parent workflow that runs varia's `VariationJob` as a child: by type name, JSON in and out.

Nothing on the workflow's code path imports varia: the child is started by its type name with
the contract's JSON input, its result is a plain dict, and when the job fails the parent reads
the failure's message, type and details as JSON too. Cancelling the parent cancels the child
(by its workflow id, so the cancel reaches it after a continue-as-new too), which stops its
FFmpeg, cleans up and closes `CANCELED`; the parent then closes `CANCELED`.

Run it against a server with a varia worker (`varia worker`) polling `VARIA_TASK_QUEUE`:

    python examples/parent_workflow.py /abs/clip.mp4 -n 2 -o /abs/out

It runs this parent's own worker on `PARENT_TASK_QUEUE` and prints the parent's result (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, CancelledError, ChildWorkflowError
from temporalio.worker import Worker
from temporalio.workflow import ChildWorkflowHandle

PARENT_WORKFLOW = "PublishVariations"


@activity.defn(name="example.list_outputs")
async def list_outputs(manifest_path: str) -> list[str]:
    """The absolute paths of the outputs the job kept, read from its manifest (I/O: an activity)."""
    manifest = json.loads(Path(manifest_path).read_text())
    job_dir = Path(manifest_path).parent
    return [str(job_dir / entry["path"]) for entry in manifest["outputs"]]


@workflow.defn(name=PARENT_WORKFLOW)
class PublishVariations:
    """Renders variations with a `VariationJob` child, then lists the files it kept."""

    @workflow.run
    async def run(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params`: {"job": <VariationJob input>, "varia_task_queue": "varia"}."""
        child = await workflow.start_child_workflow(
            "VariationJob",
            params["job"],
            id=f"{workflow.info().workflow_id}-variations",
            task_queue=params.get("varia_task_queue", "varia"),
            result_type=dict,
        )
        try:
            job: dict[str, Any] = await until_cancelled(child)
        except ChildWorkflowError as err:
            if isinstance(err.cause, ApplicationError):  # the job failed: all of it is JSON
                return {
                    "ok": False,
                    "error": err.cause.message,
                    "type": err.cause.type,
                    "details": list(err.cause.details),
                }
            raise  # the child was cancelled or terminated by someone else: the parent fails
        outputs = await workflow.execute_activity(
            list_outputs, job["manifest"], start_to_close_timeout=timedelta(minutes=1)
        )
        return {"ok": True, "job": job, "outputs": outputs}


async def until_cancelled(child: ChildWorkflowHandle[Any, dict[str, Any]]) -> dict[str, Any]:
    """The child's result; if this parent is cancelled first, cancel the child by its workflow
    id, wait until it has closed, and end cancelled.

    By id, not by the SDK's own child cancel: that one names the child's first run, and a job
    over `chunk_size` variations has continued as new by then, so the cancel would be lost and
    the job would render to its end (a Temporal limitation). An id alone reaches the run that
    is current.
    """
    try:
        return await asyncio.shield(child)
    except asyncio.CancelledError:
        await workflow.get_external_workflow_handle(child.id).cancel()
        try:
            await child
        except ChildWorkflowError as err:
            if not isinstance(err.cause, CancelledError):
                raise
        raise


def parent_worker(client: Client, task_queue: str) -> Worker:
    """A worker for this parent workflow and its activity."""
    return Worker(
        client, task_queue=task_queue, workflows=[PublishVariations], activities=[list_outputs]
    )


async def main(argv: list[str]) -> int:
    """Run one parent workflow to its end and print its result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("-n", "--variations", type=int, default=2)
    parser.add_argument("-o", "--output-dir", required=True)
    args = parser.parse_args(argv)
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    task_queue = os.environ.get("PARENT_TASK_QUEUE", "varia-parent-example")
    job = {
        "inputs": [os.path.abspath(path) for path in args.inputs],
        "variations": args.variations,
        "output_dir": os.path.abspath(args.output_dir),
    }
    async with parent_worker(client, task_queue):
        result = await client.execute_workflow(
            PARENT_WORKFLOW,
            {"job": job, "varia_task_queue": os.environ.get("VARIA_TASK_QUEUE", "varia")},
            id=f"publish-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=dict,
        )
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    code = asyncio.run(main(sys.argv[1:]))
    # Skip interpreter teardown: the SDK's Rust threads can crash it at exit
    # (temporalio/sdk-python#300), after all the work is done.
    sys.stdout.flush()
    os._exit(code)
