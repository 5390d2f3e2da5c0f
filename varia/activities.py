"""The activities: all of varia's I/O. Prepare (confine + probe), render, and finish (cleanup).

Bad input raises a non-retryable `ApplicationError` whose message names the problem; other
failures are retryable and the workflow's retry policy backs off.

Over 300 lines for now: the activity definitions still share this module with error
classification, output commit and cleanup; moving those into their own modules (errors,
`jobdir`, a cleanup module) is the next split, left open in issue 12.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from varia import jobdir, ledger, media, metrics, names, sheet, stops
from varia.bounds import render_within_bounds
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.ffmpeg.process import ProcessIdentity, stop_foreign
from varia.ffmpeg.progress import ProgressReport
from varia.ffmpeg.runner import FfmpegOutcome, run_ffmpeg
from varia.measure import complete_result
from varia.models import (
    DiscardRequest,
    FinishRequest,
    JobResult,
    LedgerAppend,
    Manifest,
    OutputEntry,
    PreparedJob,
    PrepareRequest,
    QualitySummary,
    RenderHeartbeat,
    RenderResult,
    RenderTask,
    RunRef,
    StopRenders,
)
from varia.progress_signal import ProgressSignaller
from varia.recipes import make_recipe, recipe_summary
from varia.search_attributes import SEARCH_ATTRIBUTE_NAMES, registered_search_attributes

log = logging.getLogger("varia.activities")

BAD_INPUT = "BadInput"
"""Error type of a request or input that can never succeed (not retried)."""
NO_SPACE = "NoSpace"
"""Error type of a full disk (not retried)."""
BAD_REQUEST = "BadRequest"
"""Error type of a request that conflicts with the world: its job directory belongs to an
earlier execution under the same workflow id (not retried)."""
OUTPUT_DIR_UNUSABLE = "OutputDirUnusable"
"""Error type of an output_dir that is not a directory or not writable (not retried)."""
LEDGER_CORRUPT = "LedgerCorrupt"
"""Error type of a ledger with a corrupt line before its last (not retried: a person looks)."""
NON_RETRYABLE_TYPES = (BAD_INPUT, NO_SPACE, BAD_REQUEST, OUTPUT_DIR_UNUSABLE, LEDGER_CORRUPT)
PREPARE_REFUSALS = (BAD_REQUEST, OUTPUT_DIR_UNUSABLE)
"""Prepare errors that fail the workflow with their own type (nothing was written)."""

_DISK_ERRORS = ("No space left on device", "Permission denied", "Read-only file system")


def _bad_input(message: str) -> ApplicationError:
    return ApplicationError(message, type=BAD_INPUT, non_retryable=True)


def _confinement_failure(err: jobdir.ConfinementError) -> ApplicationError:
    """The non-retryable error for a refused path or job directory, typed by its cause."""
    if isinstance(err, jobdir.JobDirTaken):
        kind = BAD_REQUEST
    elif isinstance(err, jobdir.OutputDirUnusable):
        kind = OUTPUT_DIR_UNUSABLE
    else:
        kind = BAD_INPUT
    return ApplicationError(str(err), type=kind, non_retryable=True)


class JobActivities:
    """The activities of a `VariationJob`, bound to one worker's settings."""

    def __init__(self, settings: Settings, *, stop_queue: str | None = None) -> None:
        """`stop_queue`: this process's own queue, where a worker polls `stop_renders`."""
        self.settings = settings
        self.ffmpeg = settings.ffmpeg_path()
        self.stop_queue = stop_queue
        self.renders = stops.RenderRegistry()
        self._registered: list[str] | None = None

    @activity.defn(name=names.PREPARE)
    async def prepare(self, request: PrepareRequest) -> PreparedJob:
        """Confine the paths, create the job directory with its marker, probe every input."""
        try:
            output_dir = jobdir.confine(
                request.output_dir, self.settings.allowed_output_roots, "output_dir"
            )
            inputs = [  # before the job dir exists: a refused request leaves nothing behind
                jobdir.confine(path, self.settings.allowed_input_roots, "input")
                for path in request.inputs
            ]
            job_dir = await asyncio.to_thread(
                jobdir.open_job_dir, output_dir, request.job_id, request.chain
            )
        except jobdir.ConfinementError as err:
            raise _confinement_failure(err) from None
        probed = []
        limits = self.settings.input_limits()
        for original, resolved in zip(request.inputs, inputs, strict=True):
            activity.heartbeat({"probing": original})
            try:
                info = await asyncio.to_thread(media.probe, str(resolved), limits)
            except media.MediaError as err:
                raise ApplicationError(
                    str(err).replace(repr(str(resolved)), repr(original)),
                    {"job_dir": str(job_dir)},
                    type=BAD_INPUT,
                    non_retryable=True,
                ) from None
            probed.append(info)
        return PreparedJob(job_dir=str(job_dir), media=probed)

    @activity.defn(name=names.RENDER)
    @metrics.render_metrics
    async def render(self, task: RenderTask) -> RenderResult:
        """Render one variation to a temporary name, check it, rename it into place."""
        job_dir = Path(task.job_dir)
        final = job_dir / task.output_name
        temp = job_dir / task.temp_name
        await _stop_previous_attempt(temp, self.settings.stop_stage_timeout_s)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        if task.bounds is not None:  # which attempt made an output already there is unknown
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            return await render_within_bounds(task, self._render_once, self.ffmpeg, final)
        if final.exists():  # an earlier attempt may have finished, then lost its result
            argv = build_render_argv(self.ffmpeg, task, temp)
            earlier = await asyncio.to_thread(_already_rendered, final, task, argv)
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
        beat = _heartbeat_for(
            task,
            str(temp),
            self.stop_queue,
            ProgressSignaller(task, self.settings.progress_min_render_s),
        )
        with self.renders.running(
            info.workflow_id or "", info.workflow_run_id or "", info.activity_id
        ) as pushed:
            metrics.watch_push(pushed)
            try:
                outcome = await run_ffmpeg(
                    argv,
                    on_tick=beat,
                    on_spawn=lambda identity: beat(None, identity),  # names the stop queue
                    interrupt=_worker_shutting_down,
                    stall_timeout_s=self.settings.stall_timeout_s,
                    stage_timeout_s=self.settings.stop_stage_timeout_s,
                    niceness=self.settings.ffmpeg_nice,
                    stop=pushed,
                )
                metrics.kill_stage_reached(outcome.stop_stage)
                if outcome.cancelled:
                    return await _keep_if_whole(outcome, temp, final, task, argv, pushed.is_set())
                _raise_for_outcome(outcome, label)
                return await _finish_output(temp, final, task, argv)
            finally:
                if not (pushed.is_set() or _cleanup_follows()):
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()

    @activity.defn(name=names.STOP_RENDERS)
    async def stop_renders(self, request: StopRenders) -> list[str]:
        """A pushed cancel: stop the named renders of a run that run in this process at once.

        Returns the ids of those found (a render that already ended is not an error).
        """
        return self.renders.stop(request.workflow_id, request.run_id, request.activity_ids)

    @activity.defn(name=names.RENDER_STOP_QUEUES)
    async def render_stop_queues(self, run: RunRef) -> dict[str, list[str]]:
        """{stop queue: [render activity ids]} of a run's pending renders (local activity)."""
        return await stops.render_stop_queues(activity.client(), run.workflow_id, run.run_id)

    @activity.defn(name=names.RECORD)
    async def record(self, request: LedgerAppend) -> None:
        """Append a finished run's completion records to the job's ledger (continue-as-new)."""
        job_dir = Path(request.job_dir)
        try:
            jobdir.check_owner(job_dir, request.job_id, request.chain, "record into")
        except jobdir.ConfinementError as err:
            raise _confinement_failure(err) from None
        await asyncio.to_thread(ledger.append_ledger, job_dir, request.results)

    @activity.defn(name=names.DISCARD)
    async def discard(self, request: DiscardRequest) -> list[str]:
        """Delete the partial files of renders a pause stopped (confined to the job dir)."""
        try:
            return await asyncio.to_thread(
                jobdir.discard_partials,
                Path(request.job_dir),
                request.job_id,
                request.names,
                request.chain,
            )
        except jobdir.ConfinementError as err:
            raise ApplicationError(str(err), type=BAD_INPUT, non_retryable=True) from None

    @activity.defn(name=names.SEARCH_ATTRIBUTES)
    async def search_attributes(self) -> list[str]:
        """The names of varia's search attributes that the namespace has registered."""
        if self._registered is None or set(self._registered) != set(SEARCH_ATTRIBUTE_NAMES):
            self._registered = await registered_search_attributes(
                activity.client(), activity.info().namespace
            )
        return self._registered

    @activity.defn(name=names.FINISH)
    async def finish(self, request: FinishRequest) -> JobResult:
        """Delete the job's files that are not in the completion record; write the manifest."""
        return await asyncio.to_thread(finish_job, request)


def _cleanup_follows() -> bool:
    """True when the workflow cancelled this render: its cleanup deletes (and records) the
    partial file next. For any other ending the render deletes its own partial file."""
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested


def _worker_shutting_down() -> str | None:
    return "worker shutting down" if activity.is_worker_shutdown() else None


def _heartbeat_for(
    task: RenderTask, temp: str, stop_queue: str | None, signaller: ProgressSignaller
) -> Any:
    expected = task.expected_duration_s
    recipe = recipe_summary(task.recipe)

    def beat(report: ProgressReport | None, identity: ProcessIdentity) -> None:
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
            signaller.tick(details.percent / 100.0)
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


async def _keep_if_whole(
    outcome: FfmpegOutcome,
    temp: Path,
    final: Path,
    task: RenderTask,
    argv: list[str],
    pushed: bool,
) -> RenderResult:
    """After a cancel: keep an output that FFmpeg finished anyway, else the cancel stands.

    `q` also exits 0, with a shorter file: the duration check tells the two apart. A pushed
    cancel that the SDK has not delivered yet ends the attempt as `StoppedForCancel`
    (non-retryable; the workflow counts it as cancelled).
    """
    if outcome.returncode == 0:
        try:
            return await _finish_output(temp, final, task, argv)
        except ApplicationError:
            pass
    if pushed and not _cleanup_follows():
        raise ApplicationError(
            f"{task.media.path} variation {task.variation}: stopped"
            " (the job was cancelled or paused)",
            type=stops.STOPPED_FOR_CANCEL,
            non_retryable=True,
        )
    raise asyncio.CancelledError()


def _raise_for_outcome(outcome: FfmpegOutcome, label: str) -> None:
    if outcome.stop_reason is not None:
        raise ApplicationError(
            f"{label}: FFmpeg stopped ({outcome.stop_reason}; ended by {outcome.stop_stage})",
            type="WorkerShutdown" if "shutting down" in outcome.stop_reason else "Stalled",
        )
    if outcome.returncode == 0:
        return
    tail = outcome.stderr_tail[-600:] or "(no error output)"
    if any(marker in tail for marker in _DISK_ERRORS):
        raise ApplicationError(
            f"{label}: cannot write the output: {tail}", type=NO_SPACE, non_retryable=True
        )
    raise ApplicationError(
        f"{label}: FFmpeg exited with code {outcome.returncode}: {tail}", type="FFmpegFailed"
    )


async def _finish_output(
    temp: Path, final: Path, task: RenderTask, argv: list[str]
) -> RenderResult:
    """Check the output, rename it into place, measure and record it; a cancel arriving now
    does not undo it."""
    job = asyncio.ensure_future(asyncio.to_thread(_check_and_rename, temp, final, task, argv))
    while True:
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            if job.done():
                return job.result()


def _check_and_rename(temp: Path, final: Path, task: RenderTask, argv: list[str]) -> RenderResult:
    try:
        duration = media.check_output(
            str(temp), task.expected_duration_s, task.duration_tolerance_s
        )
    except media.MediaError as err:
        raise ApplicationError(
            f"{task.media.path} variation {task.variation}: {err}", type="OutputInvalid"
        ) from None
    try:
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS):
            raise ApplicationError(
                f"cannot write {str(final)!r}: {err}", type=NO_SPACE, non_retryable=True
            ) from None
        raise
    return complete_result(_result_for(final, task, duration), final, task, argv)


def _already_rendered(final: Path, task: RenderTask, argv: list[str]) -> RenderResult | None:
    """The result of an earlier attempt that put a whole output in place, then lost it."""
    if final.is_symlink() or not final.is_file():
        return None
    try:
        duration = media.check_output(
            str(final), task.expected_duration_s, task.duration_tolerance_s
        )
    except media.MediaError:
        return None
    return complete_result(_result_for(final, task, duration), final, task, argv)


def _result_for(final: Path, task: RenderTask, duration: float) -> RenderResult:
    return RenderResult(
        input_index=task.input_index,
        variation=task.variation,
        path=final.name,
        bytes=final.stat().st_size,
        duration_s=round(duration, 3),
    )


def finish_job(request: FinishRequest) -> JobResult:
    """Cleanup, nearest siblings, contact sheets and manifest, as a plain function (the finish
    activity runs it in a thread)."""
    job_dir = Path(request.job_dir)
    results = {(r.input_index, r.variation): r for r in request.results}
    try:
        jobdir.check_owner(job_dir, request.job_id, request.chain, "clean")
        if request.use_ledger:
            for earlier in ledger.read_ledger(job_dir):
                results.setdefault((earlier.input_index, earlier.variation), earlier)
        keep = {result.path for result in results.values()}
        owned = jobdir.owned_names(request.stems, request.variations)
        cells = {sheet.cell_name(name) for name in owned if not name.startswith(".")}
        sheets_planned = sheet.planned_names(request.stems)  # an earlier run's sheet is redrawn
        owned |= sheets_planned | {names.atomic_temp_name(n) for n in sheets_planned} | cells
        kept_cells = {sheet.cell_name(name) for name in keep}
        removed, foreign = jobdir.sweep(
            job_dir, request.job_id, keep | kept_cells, owned, request.chain
        )
    except jobdir.ConfinementError as err:
        raise _confinement_failure(err) from None
    except ledger.LedgerCorrupt as err:
        raise ApplicationError(str(err), type=LEDGER_CORRUPT, non_retryable=True) from None
    removed = [name for name in removed if name not in cells]  # varia's scratch, not the job's
    ordered = sorted(results.values(), key=lambda r: (r.input_index, r.variation))
    if any(result.quality is not None for result in ordered):
        from varia.quality import with_siblings

        ordered = with_siblings(ordered)
    outputs = [_output_entry(request, result) for result in ordered]
    sheets, problems = sheet.write_sheets(job_dir, request.inputs, request.stems, outputs)
    for name in kept_cells:  # drawn: the saved frames are no longer needed
        with contextlib.suppress(FileNotFoundError):
            (job_dir / name).unlink()
    manifest = Manifest(
        job_id=request.job_id,
        state=request.state,
        seed=request.seed,
        total=len(request.inputs) * request.variations,
        completed=len(outputs),
        failed=request.failed,
        outputs=outputs,
        removed=removed,
        foreign=foreign,
        errors=[*request.errors, *problems],
        sheets=sheets,
        quality=_summary(outputs),
    )
    path = jobdir.write_manifest(job_dir, manifest)
    if foreign:
        log.warning("job %s: left foreign entries alone: %s", request.job_id, foreign)
    return JobResult(
        job_id=request.job_id,
        state=request.state,
        job_dir=str(job_dir),
        manifest=str(path),
        total=manifest.total,
        completed=manifest.completed,
        failed=manifest.failed,
        removed=len(removed),
        seed=request.seed,
        sheet=str(job_dir / sheets[0].path) if sheets else None,
        sheets=[str(job_dir / entry.path) for entry in sheets],
        quality=manifest.quality,
    )


def _output_entry(request: FinishRequest, result: RenderResult) -> OutputEntry:
    recipe = result.recipe or make_recipe(request.seed, result.input_index, result.variation)
    return OutputEntry(
        input=request.inputs[result.input_index],
        input_index=result.input_index,
        variation=result.variation,
        path=result.path,
        bytes=result.bytes,
        duration_s=result.duration_s,
        recipe=recipe,
        quality=result.quality,
        sha256=result.sha256,
        ffmpeg=result.ffmpeg,
        varia_version=result.varia_version,
        argv=result.argv,
        attempts=result.attempts,
    )


def _summary(outputs: list[OutputEntry]) -> QualitySummary | None:
    measured = [entry.quality for entry in outputs if entry.quality is not None]
    if not measured:
        return None
    from varia.quality import summarize

    return summarize(measured)
