"""The varia worker: runs `VariationJob` and its activities, polling two task queues.

The job's task queue (`VARIA_TASK_QUEUE`) carries the workflow and the light activities
(prepare, record, cleanup); `<queue>-render` carries the renders, so their cap
(`VARIA_MAX_CONCURRENT_RENDERS`) is theirs alone and a cancel's or drain's cleanup never
waits behind another job's renders. SIGTERM/SIGINT shut both down gracefully: the renders in
flight stop their FFmpeg by the three stages and fail as retryable, so another worker picks
them up. With `VARIA_PUSH_CANCEL` (the default) it also polls a queue of its own,
`<queue>-stop-<digest of its identity>`, where a cancelled job pushes `varia.stop_renders`
(`varia.stops`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from types import TracebackType

from temporalio.client import Client
from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner

from varia import code_cache, quality
from varia.activities import JobActivities
from varia.client.connection import check_namespace, connect
from varia.config import Settings, SettingsError, render_task_queue
from varia.janitor import JanitorActivities
from varia.janitor_workflow import VariaJanitor, ensure_janitor_schedule, schedule_id
from varia.joblog import JobLog
from varia.memory import fix_malloc_thresholds
from varia.metrics import make_runtime, metrics_address
from varia.search_attributes import (
    CREATE_COMMAND,
    SEARCH_ATTRIBUTE_NAMES,
    registered_search_attributes,
)
from varia.signals import stop_on_signals
from varia.stops import default_identity, stop_queue_name
from varia.workflows import VariationJob

log = logging.getLogger("varia.worker")


LIGHT_ACTIVITY_SLOTS = 8
"""Activities at once on the job's own queue: prepare, record and cleanup (and renders that
workflow code older than the render queue scheduled there, during an upgrade)."""


class VariaWorker:
    """The SDK workers of one varia worker process, started and stopped together: the job
    queue's, the render queue's, and (pushed cancels) the one of this process's own queue.

    Use it as `async with build_worker(...)`, or `await run()` until `shutdown()`.
    """

    def __init__(self, main: Worker, render: Worker, stop: Worker | None = None) -> None:
        self.main, self.render, self.stop = main, render, stop
        self.task_queue = main.task_queue
        self._all = [w for w in (stop, render, main) if w is not None]  # main starts last

    async def __aenter__(self) -> VariaWorker:
        entered: list[Worker] = []
        try:
            for worker in self._all:
                await worker.__aenter__()
                entered.append(worker)
        except BaseException as err:
            for worker in reversed(entered):
                await worker.__aexit__(type(err), err, err.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Shut all down at once, so their graceful shutdown timeouts overlap."""
        results = await asyncio.gather(
            *(worker.__aexit__(exc_type, exc, tb) for worker in self._all),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def run(self) -> None:
        """Run all until `shutdown()` (or one of them fails)."""
        await asyncio.gather(*(worker.run() for worker in self._all))

    async def shutdown(self) -> None:
        """Shut all down gracefully (in-flight renders stop their FFmpeg)."""
        await asyncio.gather(*(worker.shutdown() for worker in self._all))


SHUTDOWN_MARGIN_S = 5.0
"""Seconds past the graceful shutdown timeout that a stopping `varia worker` waits for its SDK
workers before it exits anyway. The SDK cancels activities at the graceful timeout, but waits
for a local activity (prepare, cleanup) however long it runs: measured, a prepare whose probe
hung kept a SIGTERMed worker alive for good."""
EXIT_STUCK = 1
"""The exit code of a worker that gave up waiting for its shutdown."""

STOP_SLOTS = 4
"""`stop_renders` activities at once (each only sets events: it returns at once)."""


def build_worker(
    client: Client,
    settings: Settings,
    *,
    identity: str | None = None,
    activities: JobActivities | None = None,
) -> VariaWorker:
    """A worker for varia's workflow and activities, on its queues, from `settings`
    (`activities`: ones made by the caller, who may then watch them).

    Its stop queue follows from its identity (`varia.stops`), so every render it runs is
    reachable by a push from the moment it starts."""
    quality.preload()  # before any render: see its docstring
    identity = identity or settings.worker_identity or default_identity()
    stop_queue = stop_queue_name(settings.task_queue, identity) if settings.push_cancel else None
    activities = activities or JobActivities(settings, stop_queue=stop_queue)
    stop = None
    if stop_queue is not None:
        stop = Worker(
            client,
            task_queue=stop_queue,
            activities=[activities.stop_renders],
            max_concurrent_activities=STOP_SLOTS,
            **_common(settings, identity),  # type: ignore[arg-type]
        )
    return VariaWorker(
        build_job_worker(client, settings, identity=identity, activities=activities),
        Worker(
            client,
            task_queue=render_task_queue(settings.task_queue),
            activities=[activities.render],
            tuner=_render_tuner(activities),
            **_common(settings, identity),  # type: ignore[arg-type]
        ),
        stop,
    )


@contextlib.contextmanager
def exit_when_stuck(deadline_s: float) -> Iterator[None]:
    """Exit the process (`EXIT_STUCK`) unless the block ends within `deadline_s`. A thread
    keeps the time, so a busy or blocked event loop cannot hold it up. What the process still
    ran is safe to lose: a local prepare or cleanup runs again on another worker once its
    workflow task times out, and FFmpeg dies with the worker (its parent-death signal)."""
    timer = threading.Timer(deadline_s, _exit_stuck, args=(deadline_s,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _exit_stuck(deadline_s: float) -> None:
    log.error(
        "shutdown did not finish within %.0f s (a prepare or cleanup still runs: the SDK "
        "waits for local activities); exiting anyway, it runs again on another worker once "
        "its workflow task times out",
        deadline_s,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_STUCK)


def _render_tuner(activities: JobActivities) -> WorkerTuner:
    """The render queue takes a render whenever fewer than `VARIA_MAX_CONCURRENT_RENDERS` are
    active (`varia.render_capacity`): one whose FFmpeg exited, or that waits for its job's
    slot, leaves room for the next."""
    unused = FixedSizeSlotSupplier(1)  # the render queue's worker runs no workflow
    return WorkerTuner.create_composite(
        workflow_supplier=unused,
        activity_supplier=activities.capacity.supplier(),
        local_activity_supplier=unused,
        nexus_supplier=unused,
    )


def build_job_worker(
    client: Client,
    settings: Settings,
    *,
    identity: str | None = None,
    activities: JobActivities | None = None,
) -> Worker:
    """The SDK worker of the job's own queue alone: the workflow and the light activities.

    The sandbox imports the workflow module for every run: `code_cache` compiles it once.
    """
    code_cache.install()
    activities = activities or JobActivities(settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[VariationJob, VariaJanitor],
        activities=[
            activities.prepare,
            activities.render,  # renders scheduled here by workflow code of older varia
            activities.record,
            activities.search_attributes,
            activities.clean_up,
            activities.discard,
            JanitorActivities(settings).sweep,
            activities.render_stop_queues,  # a local activity of the cancel path
        ],
        max_concurrent_activities=LIGHT_ACTIVITY_SLOTS,
        **_common(settings, identity),  # type: ignore[arg-type]
    )


def _common(settings: Settings, identity: str | None) -> dict[str, object]:
    identity = identity or settings.worker_identity
    extra = {"identity": identity} if identity else {}
    # The heartbeat throttle bounds a cancel only when it is not pushed (the fallback).
    throttle = timedelta(seconds=settings.heartbeat_throttle_s)
    return {
        "max_heartbeat_throttle_interval": throttle,
        "default_heartbeat_throttle_interval": throttle,
        "graceful_shutdown_timeout": timedelta(seconds=settings.graceful_shutdown_s),
        "interceptors": [JobLog()],
        **extra,
    }


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


async def ensure_janitor(client: Client, settings: Settings) -> None:
    """Make sure the janitor schedule of this worker's task queue exists (an existing one is
    left as it is); a clear warning if it cannot be made. Without it, jobs terminated on
    this queue would wait for a `varia janitor` by hand."""
    try:
        await ensure_janitor_schedule(
            client, settings.task_queue, settings.janitor_interval_s, keep_existing=True
        )
    except Exception as err:
        log.warning(
            "could not create the janitor schedule %s (%s): terminated jobs on task queue %r "
            "are swept only by `varia janitor`",
            schedule_id(settings.task_queue),
            err,
            settings.task_queue,
        )


def check_ffmpeg(settings: Settings) -> None:
    """Raise `SettingsError` unless the FFmpeg to run is an executable file: a worker with a
    wrong `VARIA_FFMPEG` would fail every render in an instant, so it would take the retries of
    every job and fail jobs a healthy worker could finish (found by review)."""
    path = settings.ffmpeg_path()
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return
    what = "is not an executable file" if os.path.exists(path) else "does not exist"
    source = f"VARIA_FFMPEG={settings.ffmpeg!r}" if settings.ffmpeg else "imageio-ffmpeg's FFmpeg"
    raise SettingsError(
        f"bad setting: {source}: {path!r} {what}; point VARIA_FFMPEG at an FFmpeg binary"
    )


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, exit_if_stuck: bool = False
) -> None:
    """Connect, run a worker until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly.

    `exit_if_stuck` (the `varia worker` process): if the shutdown has not finished
    `SHUTDOWN_MARGIN_S` after the graceful timeout, the process exits anyway (`exit_when_stuck`).
    """
    check_ffmpeg(settings)
    with stop_on_signals(stop) as stop:  # first: a SIGTERM while connecting is not fatal
        if fix_malloc_thresholds(settings.malloc_mmap_threshold):  # before the runtime's threads
            log.debug("glibc malloc thresholds fixed (%d bytes)", settings.malloc_mmap_threshold)
        client = await connect(settings, runtime=make_runtime(settings))
        await check_namespace(client, settings)  # else the pollers die seconds later
        await warn_if_search_attributes_missing(client, settings.temporal_namespace)
        await ensure_janitor(client, settings)
        if stop.is_set():
            return
        log.info(
            "worker polling task queues %r and %r on %s (namespace %r)",
            settings.task_queue,
            render_task_queue(settings.task_queue),
            settings.temporal_address,
            settings.temporal_namespace,
        )
        if metrics_address(settings):
            log.info("metrics at http://%s/metrics", metrics_address(settings))
        with contextlib.ExitStack() as deadline:
            async with build_worker(client, settings):
                await stop.wait()
                log.info("shutting down: stopping renders in flight (they retry elsewhere)")
                if exit_if_stuck:
                    deadline_s = settings.graceful_shutdown_s + SHUTDOWN_MARGIN_S
                    deadline.enter_context(exit_when_stuck(deadline_s))
