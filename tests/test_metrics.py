"""Metrics from a real `varia worker` (Prometheus endpoint of the SDK runtime) during real jobs,
and the job context on every log line of an activity."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from tests.conftest import Clips
from tests.helpers import assert_manifest_matches_disk, paced_ffmpeg, run_job, start_job, wait_for
from varia import names
from varia.config import Settings, render_task_queue
from varia.logs import configure_logging
from varia.models import RenderHeartbeat
from varia.processes import ProcessIdentity, death_signal_hook, terminate
from varia.server import free_port

VARIA = str(Path(sys.executable).parent / "varia")


SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def total(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when absent)."""
    found = 0.0
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match or match["name"] != name:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if all(pairs.get(key) == value for key, value in labels.items()):
            found += float(match["value"])
    return found


@dataclasses.dataclass
class MetricsWorker:
    port: int
    task_queue: str
    log: Path


@pytest.fixture
def metrics_worker(env: WorkflowEnvironment, tmp_path: Path) -> Iterator[MetricsWorker]:
    """A `varia worker` subprocess serving metrics on a free port; stopped by its pid."""
    port = free_port()
    queue = f"varia-metrics-{uuid.uuid4().hex[:8]}"
    variables = {k: v for k, v in os.environ.items() if not k.startswith("VARIA_")} | {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "VARIA_TASK_QUEUE": queue,
        "VARIA_METRICS_PORT": str(port),
        "VARIA_METRICS_HOST": "127.0.0.1",
        "VARIA_STOP_STAGE_TIMEOUT": "2",
        "VARIA_GRACEFUL_SHUTDOWN": "5",
        "VARIA_FFMPEG": str(paced_ffmpeg(tmp_path)),
    }
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [VARIA, "worker"],
            env=variables,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=death_signal_hook(),
        )
    identity = ProcessIdentity.of(process.pid)
    try:
        yield MetricsWorker(port, queue, log)
    finally:
        terminate(process, identity, timeout_s=15)


async def ffmpeg_running(client: Client, job_id: str) -> bool:
    description = await client.get_workflow_handle(job_id).describe()
    for pending in description.raw_description.pending_activities:
        payloads = list(pending.heartbeat_details.payloads)
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED or not payloads:
            continue
        [beat] = await client.data_converter.decode(payloads[-1:], [RenderHeartbeat])
        if beat.pid and beat.percent > 0:
            return True
    return False


async def test_worker_serves_varia_metrics_during_jobs(
    env: WorkflowEnvironment, metrics_worker: MetricsWorker, clips: Clips, tmp_path: Path
) -> None:
    client, port, queue = env.client, metrics_worker.port, metrics_worker.task_queue

    def serving() -> str | None:
        try:
            return scrape(port)
        except OSError:
            return None

    await wait_for(lambda: asyncio.to_thread(serving), timeout_s=60, what="the metrics endpoint")

    done_id = f"metrics-{uuid.uuid4().hex[:8]}"
    request = {"inputs": [str(clips.short)], "variations": 2, "output_dir": str(tmp_path)}
    result = await run_job(client, queue, done_id, request)
    assert result.completed == 2
    manifest = assert_manifest_matches_disk(tmp_path / done_id)

    cancel_id = f"metrics-{uuid.uuid4().hex[:8]}"
    request = {"inputs": [str(clips.long)], "variations": 1, "output_dir": str(tmp_path)}
    handle = await start_job(client, queue, cancel_id, request)
    await wait_for(lambda: ffmpeg_running(client, cancel_id), timeout_s=60, what="FFmpeg")
    during = await asyncio.to_thread(scrape, port)  # a job is rendering right now
    assert total(during, "varia_variations_completed_total") == 2
    assert total(during, "temporal_worker_task_slots_available", worker_type="ActivityWorker")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    after = await asyncio.to_thread(scrape, port)
    render = {"activity_type": names.RENDER, "task_queue": render_task_queue(queue)}
    assert total(after, "varia_variations_completed_total", **render) == 2
    assert total(after, "varia_bytes_written_total", **render) == sum(
        entry["bytes"] for entry in manifest["outputs"]
    )
    assert total(after, "varia_render_seconds_count", **render) == 2
    assert total(after, "varia_render_seconds_sum", **render) > 0
    assert total(after, "varia_variations_cancelled_total", **render) == 1
    assert total(after, "varia_cancel_to_exit_seconds_count", **render) == 1
    stages = {s: total(after, "varia_kill_stage_reached_total", stage=s) for s in ("q", "term")}
    stages["kill"] = total(after, "varia_kill_stage_reached_total", stage="kill")
    assert sum(stages.values()) == 1, stages
    assert total(after, "varia_variations_failed_total") == 0


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def log_in_render(log_format: str) -> str:
    stream = io.StringIO()
    configure_logging(Settings(VARIA_LOG_FORMAT=log_format), stream)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info, activity_id=names.render_activity_id(1, 3), workflow_id="job-7", attempt=2
    )

    def work() -> None:
        logging.getLogger("varia.activities").warning("stopped FFmpeg")
        activity.logger.info("from the SDK logger")

    environment.run(work)
    logging.getLogger("varia").info("outside any activity")
    return stream.getvalue()


@pytest.mark.usefixtures("root_logging")
def test_json_logs_carry_workflow_and_variation() -> None:
    first, second, outside = (json.loads(line) for line in log_in_render("json").splitlines())
    for line in (first, second):
        assert (line["workflow_id"], line["input_index"], line["variation"]) == ("job-7", 1, 3)
        assert line["attempt"] == 2 and line["activity_id"] == names.render_activity_id(1, 3)
    assert first["message"] == "stopped FFmpeg" and first["level"] == "WARNING"
    assert second["message"] == "from the SDK logger"
    assert "workflow_id" not in outside and outside["message"] == "outside any activity"


@pytest.mark.usefixtures("root_logging")
def test_text_logs_carry_the_same_context() -> None:
    first, _, outside = log_in_render("text").splitlines()
    assert "stopped FFmpeg [workflow_id=job-7 " in first
    assert "variation=3" in first and "input_index=1" in first
    assert outside.endswith("outside any activity")
