"""History cost of progress reporting: events per variation with the 25/50/75 % signals on
(every render signals: `VARIA_PROGRESS_MIN_RENDER=0`) and off (no render long enough), the
same job on the real dev server; and what that means for a 10,000-variation job's runs.

    python -m benchmarks.progress_cost [--variations N] [--concurrency C] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from benchmarks.plain import clip
from varia import names
from varia.config import Settings
from varia.models import DEFAULT_CHUNK_SIZE, JobRequest, JobResult
from varia.server import start_throwaway_server
from varia.worker import build_worker

HISTORY_SUGGESTS_CAN = 4096  # the server suggests continue-as-new here (and varia obeys)
HISTORY_LIMIT = 51_200  # the server's hard limit on events per run


async def _job(
    env: WorkflowEnvironment, root: Path, source: Path, variations: int, concurrency: int, on: bool
) -> Counter[str]:
    task_queue = f"progress-cost-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        VARIA_TASK_QUEUE=task_queue,
        VARIA_PROGRESS_MIN_RENDER=0.0 if on else 1e9,
        VARIA_MAX_CONCURRENT_RENDERS=concurrency,
    )
    out = root / ("on" if on else "off")
    out.mkdir(exist_ok=True)
    request = JobRequest(
        inputs=[str(source)], variations=variations, output_dir=str(out), concurrency=concurrency
    )
    async with build_worker(env.client, settings):
        handle = await env.client.start_workflow(
            names.WORKFLOW_TYPE,
            request,
            id=f"cost-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=JobResult,
        )
        result = await handle.result()
    assert result.completed == variations, result
    counts: Counter[str] = Counter()
    async for event in handle.fetch_history_events():
        counts[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
    counts["TOTAL"] = sum(counts.values())
    return counts


async def main(variations: int, concurrency: int, seconds: float) -> None:
    """Run the job twice (signals off, on) and print events per variation by type."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = clip(root / "clips", "cost", seconds=seconds, size="320x240").path
        async with await start_throwaway_server() as env:
            off = await _job(env, root, source, variations, concurrency, on=False)
            on = await _job(env, root, source, variations, concurrency, on=True)
    print(f"{variations} variations of a {seconds:g} s clip, concurrency {concurrency}")
    print(f"{'event type':40} {'off':>8} {'on':>8}  (events per variation)")
    for kind in sorted(set(off) | set(on), key=lambda k: (k == "TOTAL", k)):
        print(f"{kind:40} {off[kind] / variations:8.2f} {on[kind] / variations:8.2f}")
    per = on["TOTAL"] / variations
    print(
        f"\nwith signals on: {per:.1f} events per variation; a run of {DEFAULT_CHUNK_SIZE} "
        f"variations would hold {per * DEFAULT_CHUNK_SIZE:,.0f} events, but varia continues as "
        f"new once the server suggests it ({HISTORY_SUGGESTS_CAN:,} events), so each run of a "
        f"10,000-variation job stays near {HISTORY_SUGGESTS_CAN:,} + {concurrency} renders in "
        f"flight x {per:.0f} events, far below the {HISTORY_LIMIT:,}-event limit."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variations", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    asyncio.run(main(args.variations, args.concurrency, args.seconds))
