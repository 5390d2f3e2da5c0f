"""Run one varia job from Python and print its result as JSON.

    python examples/start_job.py /abs/clip.mp4 -n 3 -o /abs/out

Uses the same settings as the CLI (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `VARIA_TASK_QUEUE`);
a varia worker must poll that task queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from varia.client.jobs import Jobs
from varia.config import load_settings
from varia.models import JobRequest


async def main(argv: list[str]) -> int:
    """Start a job, wait for its result, print it; exit 0 when it completed."""
    parser = argparse.ArgumentParser(description="Run one varia job.")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("-n", "--variations", type=int, default=3)
    parser.add_argument("-o", "--output-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    jobs = await Jobs.open(load_settings())
    request = JobRequest(
        inputs=[os.path.abspath(path) for path in args.inputs],
        variations=args.variations,
        output_dir=os.path.abspath(args.output_dir),
        seed=args.seed,
    )
    job_id = await jobs.start(request)
    print(f"started {job_id}; waiting for it to finish", file=sys.stderr)
    result = await jobs.result(job_id)  # raises WorkflowFailureError if it failed or was cancelled
    print(result.model_dump_json())
    return 0


if __name__ == "__main__":
    code = asyncio.run(main(sys.argv[1:]))
    # Skip interpreter teardown: the SDK's Rust threads can crash it at exit
    # (temporalio/sdk-python#300), after all the work is done.
    sys.stdout.flush()
    os._exit(code)
