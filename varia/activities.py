"""The activities: all of varia's I/O. Prepare (confine + probe), render, record, discard and
cleanup (registered as `varia.finish`).

Bad input raises a non-retryable `ApplicationError` whose message names the problem; other
failures are retryable and the workflow's retry policy backs off. The errors live in
`varia.errors`, a render's output commit in `varia.render_output`, cleanup in `varia.cleanup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from varia import cleanup, errors, jobdir, ledger, media, metrics, names, output_record, stops
from varia.bounds import render_within_bounds
from varia.config import Settings, render_task_queue
from varia.despite_cancel import run_to_end
from varia.ffmpeg.argv import build_render_argv
from varia.ffmpeg.process import ProcessIdentity, stop_foreign
from varia.ffmpeg.progress import ProgressReport
from varia.ffmpeg.runner import run_ffmpeg
from varia.job_slots import JobSlots
from varia.models import (
    CleanupRequest,
    DiscardRequest,
    JobResult,
    LedgerAppend,
    PreparedJob,
    PrepareRequest,
    RenderHeartbeat,
    RenderResult,
    RenderTask,
    RunRef,
    StopRenders,
)
from varia.progress_signal import ProgressSignaller
from varia.recipes import output_stems, recipe_summary
from varia.render_capacity import RenderCapacity
from varia.render_output import (
    already_rendered,
    cleanup_follows,
    commit_output,
    keep_if_whole,
    workflow_gone,
)
from varia.render_turn import ffmpeg_turn, refuse_if_input_changed
from varia.search_attributes import SEARCH_ATTRIBUTE_NAMES, registered_search_attributes
from varia.validation import RequestError, check_threads, check_total

log = logging.getLogger("varia.activities")


def render_names(task: RenderTask) -> list[str]:
    """The names a render writes in its job directory: its output, the output's scratch name,
    its record and the record's scratch name."""
    record = names.record_name(task.output_name)
    return [task.output_name, task.temp_name, record, names.atomic_temp_name(record)]


class JobActivities:
    """The activities of a `VariationJob`, bound to one worker's settings."""

    def __init__(self, settings: Settings, *, stop_queue: str | None = None) -> None:
        """`stop_queue`: this process's own queue, where a worker polls `stop_renders`."""
        self.settings = settings
        self.ffmpeg = settings.ffmpeg_path()
        self.stop_queue = stop_queue
        self.renders = stops.RenderRegistry()
        self.capacity = RenderCapacity(settings.max_concurrent_renders)
        self.job_slots = JobSlots()
        self._render_queue = render_task_queue(settings.task_queue)
        self._registered: list[str] | None = None

    @activity.defn(name=names.PREPARE)
    async def prepare(self, request: PrepareRequest) -> PreparedJob:
        """Confine the paths, create the job directory with its marker, probe every input
        (unless `probe` is off: a job cancelled before it started only needs its directory,
        for the manifest that says so)."""
        try:  # `variations` is None in the requests of older workflow code
            check_total(len(request.inputs), request.variations or 1)
            check_threads(request.threads)
        except RequestError as err:  # before anything is made
            raise ApplicationError(str(err), type=errors.BAD_REQUEST, non_retryable=True) from None
        try:
            output_dir = jobdir.confine(
                request.output_dir, self.settings.allowed_output_roots, "output_dir"
            )
            inputs = [  # before the job dir exists: a refused request leaves nothing behind
                jobdir.confine(path, self.settings.allowed_input_roots, "input")
                for path in request.inputs
            ]
            jobdir.check_path_lengths(
                output_dir / request.job_id, output_stems(request.inputs), request.variations or 1
            )
            async with KeepBeating():
                job_dir = await asyncio.to_thread(
                    jobdir.open_job_dir, output_dir, request.job_id, request.chain
                )
        except jobdir.ConfinementError as err:
            raise errors.confinement_failure(err) from None
        except OSError as err:  # a full or read-only disk: said as such, not retried
            raise errors.write_failure(str(output_dir / request.job_id), err) or err from None
        if not request.probe:
            return PreparedJob(job_dir=str(job_dir), media=[])
        probed = []
        limits = self.settings.input_limits()
        async with KeepBeating() as beating:
            for original, resolved in zip(request.inputs, inputs, strict=True):
                beating.note({"probing": original})
                if original.endswith("/"):  # resolving drops the slash; the manifest would not
                    raise errors.bad_input(
                        f"input {original!r} ends with '/': it names a directory, not a video file",
                        {"job_dir": str(job_dir)},
                    )
                try:
                    info = await asyncio.to_thread(media.probe, str(resolved), limits)
                except media.MediaError as err:
                    raise errors.bad_input(
                        str(err).replace(repr(str(resolved)), repr(original)),
                        {"job_dir": str(job_dir)},
                    ) from None
                probed.append(info)
        return PreparedJob(job_dir=str(job_dir), media=probed)

    @activity.defn(name=names.RENDER)
    @metrics.render_metrics
    async def render(self, task: RenderTask) -> RenderResult:
        """Render one variation to a temporary name, check it, rename it into place; write its
        provenance record beside it and return the brief result (`varia.output_record`)."""
        job_dir = Path(task.job_dir)
        try:
            with self.capacity.render(counted=activity.info().task_queue == self._render_queue):
                result = await self._render(
                    with_default_threads(task, self.settings.ffmpeg_threads)
                )
                return await run_to_end(asyncio.to_thread(output_record.keep, job_dir, result))
        except asyncio.CancelledError:
            if workflow_gone():  # not a failure: said in one line (`joblog`), no traceback
                label = f"{task.media.path} variation {task.variation}"
                raise errors.workflow_gone(label) from None
            raise
        except Exception as err:
            if (gone := _job_dir_gone(job_dir, err)) is None:
                raise
            raise gone from None
        finally:
            if task.slot is not None:  # however it ended, the render after it may go, unless
                # nobody waits for the job any more (`workflow_gone`): then it stays put
                done = self.job_slots.leave_turn if workflow_gone() else self.job_slots.end_turn
                done(job_dir, task.slot, task.order)

    async def _render(self, task: RenderTask) -> RenderResult:
        """The render's full result: an earlier attempt's output, or a new one."""
        job_dir = Path(task.job_dir)
        final = job_dir / task.output_name
        temp = job_dir / task.temp_name
        try:
            jobdir.check_names_free(job_dir, render_names(task))
        except jobdir.NameTaken as err:
            raise errors.confinement_failure(err) from None
        await _stop_previous_attempt(temp, self.settings.stop_stage_timeout_s)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        refuse_if_input_changed(task)  # again when its turn comes (`ffmpeg_turn`)
        if task.bounds is not None:  # which attempt made an output already there is unknown
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            return await render_within_bounds(task, self._render_once, self.ffmpeg, final)
        if final.exists():  # an earlier attempt may have finished, then lost its result
            argv = build_render_argv(self.ffmpeg, task, temp)
            earlier = await asyncio.to_thread(already_rendered, final, task, argv)
            if earlier is not None:
                return earlier
        return await self._render_once(task)

    async def _render_once(self, task: RenderTask) -> RenderResult:
        """One FFmpeg run of the task's recipe, checked, measured and renamed into place."""
        final = Path(task.job_dir) / task.output_name
        temp = Path(task.job_dir) / task.temp_name
        label = f"{task.media.path} variation {task.variation}"
        argv = build_render_argv(self.ffmpeg, task, temp)
        info = activity.info()
        signaller = ProgressSignaller(task, self.settings.progress_min_render_s)
        beat = _heartbeat_for(
            task, str(temp), self.stop_queue, signaller, self.settings.heartbeat_throttle_s / 2
        )

        def spawned(identity: ProcessIdentity) -> None:
            del identity  # the loop's first heartbeat carries it (`_heartbeat_for`)
            signaller.ffmpeg_started()  # a projection excludes the wait for the job's slot

        with self.renders.running(
            info.workflow_id or "", info.workflow_run_id or "", info.activity_id
        ) as pushed:
            metrics.watch_push(pushed)
            try:
                async with ffmpeg_turn(
                    task, self.capacity, self.job_slots, pushed, self.stop_queue, label
                ):
                    outcome = await run_ffmpeg(
                        argv,
                        on_tick=beat,
                        on_spawn=spawned,
                        interrupt=lambda: _why_stop(Path(task.job_dir)),
                        stall_timeout_s=self.settings.stall_timeout_s,
                        stage_timeout_s=self.settings.stop_stage_timeout_s,
                        niceness=self.settings.ffmpeg_nice,
                        stop=pushed,
                        cancel_stage_timeout_s=lambda: self._cancel_stage_timeout(pushed),
                    )
                metrics.kill_stage_reached(outcome.stop_stage)
                if outcome.cancelled:
                    return await keep_if_whole(outcome, temp, final, task, argv, pushed.is_set())
                if failure := errors.ffmpeg_failure(outcome, label):
                    raise failure
                return await commit_output(temp, final, task, argv)
            finally:
                if not (pushed.is_set() or cleanup_follows()):
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()

    def _cancel_stage_timeout(self, pushed: asyncio.Event) -> float:
        """Short stop stages when the partial output is deleted anyway (a cancel or pause:
        FFmpeg's flush would only burn CPU); a worker shutdown or a timeout keeps the long."""
        details = activity.cancellation_details()
        if pushed.is_set() or (details and (details.cancel_requested or details.paused)):
            return self.settings.cancel_stage_timeout_s
        return self.settings.stop_stage_timeout_s

    @activity.defn(name=names.STOP_RENDERS)
    async def stop_renders(self, request: StopRenders) -> list[str]:
        """A pushed cancel: stop the named renders of a run that run in this process at once.

        Returns the ids of those found (a render that already ended is not an error).
        """
        return self.renders.stop(request.workflow_id, request.run_id, request.activity_ids)

    @activity.defn(name=names.RENDER_STOP_QUEUES)
    async def render_stop_queues(self, run: RunRef) -> dict[str, list[str]]:
        """{stop queue: [render activity ids]} of a run's pending renders (a local activity:
        its task queue is the job's)."""
        return await stops.render_stop_queues(
            activity.client(), activity.info().task_queue, run.workflow_id, run.run_id
        )

    @activity.defn(name=names.RECORD)
    async def record(self, request: LedgerAppend) -> None:
        """Append a finished run's completion records to the job's ledger (continue-as-new)."""
        job_dir = Path(request.job_dir)
        try:
            jobdir.check_owner(job_dir, request.job_id, request.chain, "record into")
        except jobdir.ConfinementError as err:
            raise errors.confinement_failure(err) from None
        async with KeepBeating():  # a retried append is merged on read
            await asyncio.to_thread(ledger.append_ledger, job_dir, request.results)

    @activity.defn(name=names.DISCARD)
    async def discard(self, request: DiscardRequest) -> list[str]:
        """Delete the partial files of renders a pause stopped (confined to the job dir)."""
        try:
            async with KeepBeating():
                return await asyncio.to_thread(
                    jobdir.discard_partials,
                    Path(request.job_dir),
                    request.job_id,
                    request.names,
                    request.chain,
                )
        except jobdir.ConfinementError as err:
            raise errors.bad_input(str(err)) from None

    @activity.defn(name=names.SEARCH_ATTRIBUTES)
    async def search_attributes(self) -> list[str]:
        """The names of varia's search attributes that the namespace has registered."""
        if self._registered is None or set(self._registered) != set(SEARCH_ATTRIBUTE_NAMES):
            self._registered = await registered_search_attributes(
                activity.client(), activity.info().namespace
            )
        return self._registered

    @activity.defn(name=names.FINISH)
    async def clean_up(self, request: CleanupRequest) -> JobResult:
        """Delete the job's files that are not in the completion record; write the manifest."""
        async with KeepBeating():  # a retry sweeps again: it keeps the same outputs
            return await asyncio.to_thread(cleanup.clean_up_job, request)


class KeepBeating:
    """Heartbeat every `every_s` while an activity's work runs (in threads), from `every_s`
    after its start, repeating the latest details: a worker that dies mid-step is noticed
    within the heartbeat timeout. A local activity (prepare and cleanup in newer runs) sends
    none: the workflow task it runs in times out instead."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self.details: tuple[Any, ...] = ()
        self._task: asyncio.Task[None] | None = None

    def note(self, *details: Any) -> None:
        """The details of the heartbeats from now on (a quick step sends none)."""
        self.details = details

    async def __aenter__(self) -> KeepBeating:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task])  # raises no error of the beat task's

    async def _beat(self) -> None:
        if activity.info().is_local:  # its workflow task is what shows the worker alive
            return
        while True:  # the first after `every_s`: a quick step sends none
            await asyncio.sleep(self.every_s)
            activity.heartbeat(*self.details)


def with_default_threads(task: RenderTask, threads: int | None) -> RenderTask:
    """The task with the worker's `VARIA_FFMPEG_THREADS` as its `-threads` when the job set
    none (unset too: FFmpeg chooses)."""
    if task.threads is not None or threads is None:
        return task
    return task.model_copy(update={"threads": threads})


def _why_stop(job_dir: Path) -> str | None:
    """Why FFmpeg must stop now, asked every tick: the worker shuts down, or the job directory
    is gone (its output could never be kept; `render` then says so)."""
    if activity.is_worker_shutdown():
        return errors.WORKER_SHUTDOWN_REASON
    return None if jobdir.job_dir_gone(job_dir) is None else "its job directory is gone"


def _job_dir_gone(job_dir: Path, err: Exception) -> ApplicationError | None:
    """A render's failure while its job directory is gone (deleted while the job ran): not
    retried, naming the directory, whatever step found it (every retry would fail alike, and
    the renders waiting for the slot would wait forever). A final error keeps its own words."""
    if isinstance(err, ApplicationError) and err.non_retryable:
        return None  # a stop (cancel, pause, terminate) or a cause of its own
    gone = err if isinstance(err, jobdir.JobDirGone) else jobdir.job_dir_gone(job_dir)
    return None if gone is None else errors.confinement_failure(gone)


def _heartbeat_for(
    task: RenderTask,
    temp: str,
    stop_queue: str | None,
    signaller: ProgressSignaller,
    every_s: float,
) -> Any:
    """The render loop's tick: the progress steps on every call, a heartbeat at most every
    `every_s` (half the SDK's throttle: it sends no more often anyway, and building and
    encoding the details each 0.1 s tick was the worker's largest cost), the first one
    `every_s` after this call: a render shorter than that sends none (each costs the server
    and the worker about 5 ms of CPU; a cancel finds the render by its worker identity,
    `varia.stops`, and a worker that dies kills its FFmpeg)."""
    expected = task.expected_duration_s
    recipe = recipe_summary(task.recipe)
    last_sent = time.monotonic()

    def beat(report: ProgressReport | None, identity: ProcessIdentity) -> None:
        nonlocal last_sent
        if report is not None:
            signaller.tick(report.percent(expected) / 100.0)
        now = time.monotonic()
        if now - last_sent < every_s:
            return
        last_sent = now
        details = RenderHeartbeat(
            output=task.output_name,
            recipe=recipe,
            pid=identity.pid,
            pid_create_time=identity.create_time,
            temp=temp,
            stop_queue=stop_queue,
        )
        if report is not None:
            details.percent = round(report.percent(expected), 1)
            details.fps = None if report.fps is None else round(report.fps, 1)
            details.speed = None if report.speed is None else round(report.speed, 2)
            eta = report.eta_s(expected)
            details.eta_s = None if eta is None else round(eta, 1)
            details.out_time_s = round(report.out_time_s or 0.0, 2)
            details.frame = report.frame or 0
        activity.heartbeat(details.model_dump())

    return beat


async def _stop_previous_attempt(temp: Path, stage_timeout_s: float) -> None:
    """On a retry, stop an FFmpeg the previous attempt left running (if it is still that one)."""
    details = activity.info().heartbeat_details
    if not details:
        return
    try:
        last = RenderHeartbeat.model_validate(details[-1])
    except ValueError:
        return
    if last.pid is None or last.pid_create_time is None or last.temp_path() != str(temp):
        return
    identity = ProcessIdentity(last.pid, last.pid_create_time)
    stage = await stop_foreign(identity, must_contain=str(temp), stage_timeout_s=stage_timeout_s)
    if stage is not None:
        log.warning("stopped FFmpeg pid %s left by a previous attempt (%s)", last.pid, stage)
