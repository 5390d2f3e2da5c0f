"""What one Temporal operation costs the dev server and the worker in CPU, by difference.

Each kind of workflow runs N operations of one kind (a heartbeat, an activity with the
workflow task that sees it end, a local activity) against the same workflow without them
(an activity that sleeps as long as the heartbeating one, or a workflow that does nothing),
kinds interleaved round by round; a per-operation cost is the difference of the medians over
N. The dev server's CPU comes from `/proc` (its process), the worker's from this process's
rusage (an in-process SDK worker, unsandboxed: the workflow side costs varia's sandboxed
workflow more). These are the prices behind the job figures. The full profile then runs one
job of each of `independent`'s shapes on a `varia worker` and counts, by the dev server's own
request counters, the heartbeats, activity completions and workflow task completions each one
made, beside the server's CPU for that job: what its heartbeats and activities at these
prices predict, against what `/proc` measured (a second method for the server's share of
orchestration CPU; the start, the close and the workflow's own commands are not priced).
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import uuid
from datetime import timedelta
from pathlib import Path

import matplotlib.pyplot as plt
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from benchmarks.independent import SHAPES
from benchmarks.plain import clip
from benchmarks.raw import cpu_seconds
from benchmarks.report import Context, Report, Row, save_chart
from benchmarks.stack import Stack, new_job_id, request

NAME = "rpc_cost"
GAP_S = 0.03
"""Between two heartbeats (the SDK's throttle is set to 1 ms here, so each is sent)."""
KINDS = ("quiet", "beats", "none", "activities", "local")
LABELS = {
    "beats": ("a heartbeat", "quiet"),
    "activities": ("an activity and the workflow task that sees it end", "none"),
    "local": ("a local activity", "none"),
}


@activity.defn(name="bench.beat")
async def beat(count: int) -> None:
    """Heartbeat `count` times, `GAP_S` apart."""
    for index in range(count):
        activity.heartbeat(index)
        await asyncio.sleep(GAP_S)


@activity.defn(name="bench.quiet")
async def quiet(count: int) -> None:
    """As long as `beat`, without heartbeats."""
    for _ in range(count):
        await asyncio.sleep(GAP_S)


@activity.defn(name="bench.noop")
async def noop(index: int) -> int:
    """Nothing: the cost is the activity's own."""
    return index


@workflow.defn(name="bench.Operations")
class Operations:
    """Runs `count` operations of one kind."""

    @workflow.run
    async def run(self, kind: str, count: int) -> None:
        """`kind` is one of `KINDS`."""
        timeout = timedelta(minutes=2)
        if kind in ("beats", "quiet"):
            await workflow.execute_activity(
                beat if kind == "beats" else quiet,
                count,
                start_to_close_timeout=timeout,
                heartbeat_timeout=timeout,
            )
        for index in range(count if kind in ("activities", "local") else 0):
            if kind == "activities":
                await workflow.execute_activity(noop, index, start_to_close_timeout=timeout)
            else:
                await workflow.execute_local_activity(noop, index, start_to_close_timeout=timeout)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(ctx: Context) -> Report:
    """Interleaved rounds of every kind; per-operation CPU of the server and the worker."""
    count, rounds = (20, 3) if ctx.quick else (40, 5)
    spent: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    jobs: dict[str, dict[str, float]] = {}
    async with Stack(NAME, metrics=True) as stack:
        assert stack.server.process is not None
        server_pid = stack.server.process.pid
        queue = f"bench-{NAME}-{uuid.uuid4().hex[:6]}"
        async with Worker(
            stack.client,
            task_queue=queue,
            workflows=[Operations],
            activities=[beat, quiet, noop],
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_heartbeat_throttle_interval=timedelta(milliseconds=1),
            default_heartbeat_throttle_interval=timedelta(milliseconds=1),
        ):
            for _ in range(rounds + 1):  # the first round warms up and is dropped
                for kind in KINDS:
                    server_before, worker_before = cpu_seconds(server_pid), _own_cpu_s()
                    await stack.client.execute_workflow(
                        Operations.run,
                        args=[kind, count],
                        id=f"{NAME}-{uuid.uuid4().hex[:8]}",
                        task_queue=queue,
                    )
                    server = cpu_seconds(server_pid) - server_before
                    spent[kind].append(
                        (server.own_s + server.children_s, _own_cpu_s() - worker_before)
                    )
        if not ctx.quick:
            jobs = await _count_jobs(stack, server_pid)
    for kind in KINDS:
        spent[kind] = spent[kind][1:]
    report = Report(
        NAME,
        f"CPU per Temporal operation, dev server and worker: {count} operations against "
        f"none, median of {rounds} interleaved rounds",
    )
    costs: dict[str, tuple[float, float]] = {}
    for kind, (label, baseline) in LABELS.items():
        server_ms, worker_ms = (
            1000
            * (
                statistics.median(s[part] for s in spent[kind])
                - statistics.median(s[part] for s in spent[baseline])
            )
            / count
            for part in (0, 1)
        )
        costs[kind] = (server_ms, worker_ms)
        report.rows.append(
            Row(f"{label}: dev server, worker", f"{server_ms:.2f} ms, {worker_ms:.2f} ms")
        )
    for name, job in jobs.items():
        predicted_s = (
            job["heartbeats"] * costs["beats"][0] + job["activities"] * costs["activities"][0]
        ) / 1000
        report.rows.append(
            Row(
                f"{name} job: heartbeats, activities, workflow tasks; dev server CPU "
                "its heartbeats and activities predict / measured",
                f"{job['heartbeats']:.0f}, {job['activities']:.0f}, {job['workflow_tasks']:.0f};"
                f" {predicted_s:.3f} / {job['server_cpu_s']:.3f} s",
            )
        )
    report.data = {
        "count": count,
        "spent": spent,
        "per_operation_ms": costs,
        "jobs": jobs,
    }
    report.notes.append(
        "differences of medians over N; the worker is an unsandboxed in-process SDK worker, "
        "and this process's own CPU includes the client's calls"
    )
    return report


async def _count_jobs(stack: Stack, server_pid: int) -> dict[str, dict[str, float]]:
    """One job of each `independent` shape on a `varia worker` (after a warm-up job): the
    requests it made, by the server's counters, and the server's CPU meanwhile."""
    worker = await stack.start_worker(max_renders=2)
    clips = {
        name: clip(stack.root / "clips", name, seconds=shape.seconds, size=shape.size)
        for name, shape in SHAPES.items()
    }
    jobs: dict[str, dict[str, float]] = {}
    for name in ("warm-up", *SHAPES):
        shape = SHAPES.get(name, SHAPES["demo"])
        source = clips["demo" if name == "warm-up" else name].fresh()
        job = request(
            [source.path],
            shape.variations,
            stack.out_dir,
            concurrency=shape.concurrency,
            seed=shape.seed,
        )
        before, server_before = await _settled_counts(stack), cpu_seconds(server_pid)
        await (await stack.start_job(worker, job, new_job_id(NAME))).result()
        server = cpu_seconds(server_pid) - server_before
        after = await _settled_counts(stack)

        def made(operation: str) -> float:
            return after.get(operation, 0.0) - before.get(operation, 0.0)  # noqa: B023

        jobs[name] = {
            "heartbeats": made("RecordActivityTaskHeartbeat"),
            "activities": made("RespondActivityTaskCompleted") + made("RespondActivityTaskFailed"),
            "workflow_tasks": made("RespondWorkflowTaskCompleted"),
            "server_cpu_s": server.own_s + server.children_s,
        }
    del jobs["warm-up"]
    return jobs


COUNTED = (
    "RecordActivityTaskHeartbeat",
    "RespondActivityTaskCompleted",
    "RespondActivityTaskFailed",
    "RespondWorkflowTaskCompleted",
)


async def _settled_counts(stack: Stack, deadline_s: float = 15.0) -> dict[str, float]:
    """The server's request counters once the counted ones hold still for `SETTLE_S` (the
    server publishes its metrics periodically, so a read right after a job can miss its last
    requests and give them to the next job)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    counts = stack.request_counts()
    while True:
        await asyncio.sleep(SETTLE_S)
        later = stack.request_counts()
        steady = all(later.get(op) == counts.get(op) for op in COUNTED)
        if steady or loop.time() > deadline:
            return later
        counts = later


SETTLE_S = 1.5
"""How long the counted requests must hold still (a read right after a job missed its last
requests in a trial run: the server publishes its counters periodically)."""


def chart(report: Report, path: Path) -> None:
    """Bars: each operation's CPU, server and worker stacked."""
    costs = report.data["per_operation_ms"]
    kinds = list(costs)
    fig, axis = plt.subplots(figsize=(7, 4))
    server = [costs[k][0] for k in kinds]
    worker = [costs[k][1] for k in kinds]
    axis.bar(kinds, server, label="dev server")
    axis.bar(kinds, worker, bottom=server, label="worker")
    axis.set_ylabel("CPU ms per operation")
    axis.set_title(report.title, fontsize=9)
    axis.legend(fontsize=8)
    save_chart(fig, path)
