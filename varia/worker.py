"""The varia worker: runs `VariationJob` and its activities on one task queue.

SIGTERM/SIGINT shut it down gracefully: the renders in flight stop their FFmpeg by the three
stages and fail as retryable, so another worker picks them up.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from varia.activities import JobActivities
from varia.client import connect
from varia.config import Settings
from varia.joblog import JobLog
from varia.metrics import make_runtime, metrics_address
from varia.search_attributes import (
    CREATE_COMMAND,
    SEARCH_ATTRIBUTE_NAMES,
    registered_search_attributes,
)
from varia.workflows import VariationJob

log = logging.getLogger("varia.worker")


def build_worker(client: Client, settings: Settings, *, identity: str | None = None) -> Worker:
    """A worker for varia's workflow and activities, configured from `settings`."""
    activities = JobActivities(settings)
    identity = identity or settings.worker_identity
    extra = {"identity": identity} if identity else {}
    # Capping the SDK's heartbeat throttle makes a cancel reach FFmpeg within about that long.
    throttle = timedelta(seconds=settings.heartbeat_throttle_s)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[VariationJob],
        activities=[
            activities.prepare,
            activities.render,
            activities.record,
            activities.search_attributes,
            activities.finish,
        ],
        max_concurrent_activities=settings.max_concurrent_renders + 2,
        max_heartbeat_throttle_interval=throttle,
        default_heartbeat_throttle_interval=throttle,
        graceful_shutdown_timeout=timedelta(seconds=settings.graceful_shutdown_s),
        interceptors=[JobLog()],
        **extra,  # type: ignore[arg-type]
    )


async def warn_if_search_attributes_missing(client: Client, namespace: str) -> list[str]:
    """Log a clear warning when the namespace lacks varia's search attributes."""
    try:
        present = await registered_search_attributes(client, namespace)
    except Exception as err:
        log.warning("could not list search attributes (%s); jobs run without them", err)
        return []
    missing = [name for name in SEARCH_ATTRIBUTE_NAMES if name not in present]
    if missing:
        log.warning(
            "namespace %r lacks search attributes %s: jobs run, but cannot be filtered by "
            "them. Register them once with: %s",
            namespace,
            ", ".join(missing),
            CREATE_COMMAND.replace("<ns>", namespace),
        )
    return present


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Connect, run a worker until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # first: a SIGTERM while connecting is not fatal
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await connect(settings, runtime=make_runtime(settings))
        await warn_if_search_attributes_missing(client, settings.temporal_namespace)
        if stop.is_set():
            return
        log.info(
            "worker polling task queue %r on %s (namespace %r)",
            settings.task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        if metrics_address(settings):
            log.info("metrics at http://%s/metrics", metrics_address(settings))
        async with build_worker(client, settings):
            await stop.wait()
            log.info("shutting down: stopping renders in flight (they retry elsewhere)")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
