"""A worker process that polls only the render queue (`<VARIA_TASK_QUEUE>-render`).

The model-based test SIGKILLs it mid-render: its FFmpeg dies with it (parent-death signal),
the render's heartbeat times out and a new one of these takes the retry. The job's own queue
(workflow, prepare, record, cleanup) is served by a worker in the test process, so a kill lands
only in renders (kills in prepare, record and cleanup: `test_step_faults`).

Run as `python -m tests.reliability.render_worker`; settings from the environment.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

from temporalio.worker import Worker

from varia.activities import JobActivities
from varia.client.connection import connect
from varia.config import Settings, render_task_queue


async def main() -> None:
    """Poll the render queue until SIGTERM/SIGINT (a SIGKILL just ends the process)."""
    settings = Settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    throttle = timedelta(seconds=settings.heartbeat_throttle_s)
    worker = Worker(
        client,
        task_queue=render_task_queue(settings.task_queue),
        activities=[JobActivities(settings).render],
        max_concurrent_activities=settings.max_concurrent_renders,
        max_heartbeat_throttle_interval=throttle,
        default_heartbeat_throttle_interval=throttle,
        graceful_shutdown_timeout=timedelta(seconds=settings.graceful_shutdown_s),
    )
    async with worker:
        print("render worker polling", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
