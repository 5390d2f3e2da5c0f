"""`VariationJob`: plans seeded variations, renders them with bounded concurrency, cleans up.

Deterministic: no I/O, no clock, no randomness except through `workflow.*`. A long job
continues as new every `chunk_size` variations (the completion records of finished runs go
to the job's ledger file), so its history stays short at any size.

Over 300 lines on purpose: one class whose handlers, run, render loop, continue-as-new and
cleanup share one state, and whose command order is the replay contract; split, the
determinism rules would be spread over several files. What needs none of its state lives
apart: activity options and the pushed stop (`workflow_calls`), the operator view
(`job_view`), error reading (`errors`), running a step to its end (`despite_cancel`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from varia import names
    from varia.activities import JobActivities
    from varia.config import render_task_queue
    from varia.despite_cancel import (
        completion_wins,
        raise_if_cancel_requested,
        run_to_end_in_workflow,
    )
    from varia.errors import (
        BAD_INPUT,
        BAD_REQUEST,
        JOB_FAILED,
        NO_SPACE,
        NON_RETRYABLE_TYPES,
        PREPARE_REFUSALS,
        UPDATE_REFUSED,
        cause_message,
        counts_as_stopped,
        error_type,
        halts_job,
        job_dir_from_failure,
        own_message,
    )
    from varia.job_view import changed, details_text, outcome_lines, search_attribute_updates
    from varia.models import (
        DEFAULT_CHUNK_SIZE,
        CleanupRequest,
        DiscardRequest,
        FinalState,
        JobCarry,
        JobRequest,
        JobResult,
        JobState,
        LedgerAppend,
        MediaInfo,
        PreparedJob,
        PrepareRequest,
        Progress,
        RenderProgress,
        RenderResult,
        RenderTask,
        RunningVariation,
    )
    from varia.percent import job_eta_s, weighted_percent
    from varia.recipes import (
        default_seed,
        make_recipe,
        output_name,
        output_stems,
        recipe_summary,
    )
    from varia.timeouts import render_start_to_close
    from varia.validation import (
        RequestError,
        check_job_id,
        ignored_fields,
        parse_request,
        strength_bounds,
    )
    from varia.workflow_calls import (
        IO_RETRY,
        LIGHT_HEARTBEAT_TIMEOUT,
        LOCAL_STEP_TIMEOUT,
        RENDER_HEARTBEAT_TIMEOUT,
        RENDER_RETRY,
        TRY_CANCEL,
        WAIT,
        local_step,
        push_missed_again,
        push_stop,
        render_priority,
    )

MAX_ERRORS_KEPT = 20
KEEP_EARLY_DRAIN = "keep-early-drain"
"""Patch: a drain accepted before `run()` survives `_resume` (only runs where it happened
record the marker; older histories of such a run replay their old path)."""
PUSH_CANCEL_PATCH = "push-cancel"
"""Runs recorded before pushed cancels replay without them (`workflow.patched`)."""
RENDER_AHEAD_PATCH = "render-ahead"
"""Runs recorded before it keep at most `concurrency` renders in flight; newer runs keep two per
job slot, the running one and the next (`_render_chunk`)."""
PUSH_AGAIN_PATCH = "push-again"
"""Runs recorded before it push a cancel once; newer runs push again to the renders that no
push found running once every push has replied (`push_missed_again`)."""
PERCENT_STEPS_PATCH = "percent-steps"
"""Runs recorded before it upsert VariaCompleted/VariaPercent after every finished render; newer
runs only when the whole percent moves (a 10,000-variation job: about 100 upserts, not one per
workflow task, each an event in its history)."""
STRICT_REQUEST_PATCH = "strict-request"
"""Runs recorded before it read their request with lax types (`"2"` as 2) and ignored a
misspelt field; newer runs refuse both (`validation.parse_request`)."""
EARLY_CANCEL_MANIFEST_PATCH = "early-cancel-manifest"
"""Runs recorded before it ended a job cancelled before prepare with no job directory and no
manifest; newer runs make the directory (no probing) and write the `cancelled` manifest."""
BAD_INPUT_PATCH = "bad-input-type"
"""Runs recorded before it failed a job whose input prepare refused as `JobFailed` ("BadInput:
…"); newer runs fail it as `BadInput`, so a caller can tell a bad input from failed renders."""
PAUSE_WHEN_DONE_PATCH = "pause-when-done"
"""Runs recorded before it paused even when the pause left nothing to render (the last renders
finished anyway): paused at 100 % with no manifest until resumed. Newer runs end the job."""
UPSERT_PACE_PATCH = names.UPSERT_PACE_PATCH
"""Runs recorded before it upsert VariaCompleted/VariaPercent whenever a render finishes or
steps and the whole percent moved; newer runs at most once per `UPSERT_GAP_S` of the job's
time (a state change upserts at once, and so does the last render): each upsert in its own
workflow task costs the server a visibility write, and a short job's renders finish a second
apart. It also stands for every patch before it (`VariationJob._patched`)."""
LOCAL_EDGES_PATCH = names.LOCAL_EDGES_PATCH
"""Runs recorded before it run prepare and cleanup as activities on the job's task queue; newer
runs run them as local activities, in the workflow task that asks for them: the job's first
renders are scheduled in the task that prepared it, and the job closes in the task that cleaned
it up, two workflow tasks and two activity tasks fewer per job (its head and tail each lose a
round trip to the server). A worker that dies mid-step is noticed when its workflow task times
out, and the step runs again on another worker (both are idempotent, as for a retry). It also
stands for every patch before it (`VariationJob._patched`)."""
REFUSE_ALIKE_PATCH = names.REFUSE_ALIKE_PATCH
"""Runs recorded before it went on starting renders that were bound to fail as one before them
had: each variation of an input that changed since the probe failed on its own (a render, a
failure, an error line each), and every render of a job whose directory was deleted. Newer runs
start none of an input's other variations once a render refused it (`BadInput`; they count as
failed, said once) and no more renders once one found the job directory gone
(`errors.HALTS_JOB`). It also stands for every patch before it (`VariationJob._patched`)."""
UPSERT_GAP_S = 2.0
"""Seconds of a job's time between two progress upserts at least (patch "upsert-pace")."""
CLEANUP_FAILURE_PATCH = "cleanup-failure"
"""Runs recorded before it failed with cleanup's bare `ActivityError` ("Activity task failed")
when cleanup failed; newer runs say state `failed` and fail with an `ApplicationError` in
cleanup's own words (say, a job directory deleted while the job ran)."""


@workflow.defn(name=names.WORKFLOW_TYPE)
class VariationJob:
    """Renders `variations` seeded variations of every input into `<output_dir>/<id>/`."""

    def __init__(self) -> None:
        self._job_id = ""
        self._state: JobState = "pending"
        self._total = 0
        self._completed = 0
        self._failed = 0
        self._results: list[RenderResult] = []
        self._running: dict[tuple[int, int], RenderTask] = {}
        self._errors: list[str] = []
        self._draining = False
        self._halted = False  # a render failed in a way every other one would too
        self._cancel_requested = False
        self._job_dir: str | None = None
        self._search_attributes: list[str] = []
        self._runs = 1
        self._seed = 0
        self._failure_type = JOB_FAILED
        self._outcome_lines: list[str] = []  # contact sheet and quality, once cleanup ran
        self._fractions: dict[tuple[int, int], float] = {}  # running renders' coarse progress
        self._percent_on = False  # patch "varia-percent": fractions, VariaPercent, more upserts
        self._upserted_percent = -1.0  # the VariaPercent last upserted (patch "percent-steps")
        self._upserted_at: float | None = None  # when it was (workflow time)
        self._paced = False  # patch "upsert-pace": progress upserts `UPSERT_GAP_S` apart
        self._local_edges = False  # patch "local-edges": prepare and cleanup run locally
        self._refuse_alike = False  # patch "refuse-alike": see `_refuse_alike_of`
        self._refused_inputs: dict[int, str] = {}  # input index -> its path, refused by a render
        self._pace: tuple[float, float] | None = None  # (percent, time) the ETA is measured from
        self._result: JobResult | None = None
        self._paused = False
        self._variations = 1
        self._continuing = False
        self._priority = Priority.default
        self._push_again = False  # `PUSH_AGAIN_PATCH`: push again to renders a push missed
        self._follow_up: asyncio.Future[None] | None = None  # the second push (held: a task
        # nobody references may be collected before it runs)
        self._redo: list[int] = []  # variations a pause stopped: rendered again first
        self._drain_seen = False  # the render loop dropped its queued renders for a drain
        self._ahead = False  # patch "render-ahead": two renders in flight per job slot

    # ---- public handlers -------------------------------------------------------------

    @workflow.query(name=names.PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Where the job is; answers while it runs and after it closed."""
        heads = self._slot_heads()
        return Progress(
            job_id=self._job_id or workflow.info().workflow_id,
            state=self._state,
            total=self._total,
            completed=self._completed,
            failed=self._failed,
            running=len(heads),
            percent=self._percent(),
            job_dir=self._job_dir,
            draining=self._draining,
            cancel_requested=self._cancel_requested,
            running_variations=[
                RunningVariation(input_index=i, variation=v, output=task.output_name)
                for (i, v), task in sorted(heads.items())
            ],
            errors=list(self._errors),
            eta_s=self._eta_s(),
            paused=self._paused and self._state not in _PAUSE_SETTLED - {"paused"},
            manifest=self._result.manifest if self._result else None,
            removed=self._result.removed if self._result else None,
            queued=len(self._running) - len(heads),
        )

    def _slot_heads(self) -> dict[tuple[int, int], RenderTask]:
        """The renders in flight that are not queued behind another in their job slot."""
        taken: set[int] = set()
        heads = {}
        for key, task in self._running.items():  # in the order they were scheduled
            if task.slot is None or task.slot not in taken:
                heads[key] = task
            if task.slot is not None:
                taken.add(task.slot)
        return heads

    @workflow.signal(name=names.RENDER_PROGRESS_SIGNAL)
    def render_progress(self, report: RenderProgress) -> None:
        """A long render says how far it is (at coarse steps): the job's percent follows."""
        key = (report.input_index, report.variation)
        if key in self._running and report.fraction > self._fractions.get(key, 0.0):
            self._fractions[key] = report.fraction
            if self._progress_upsert_allowed():
                self._upsert_search_attributes()
            self._update_details()

    @workflow.update(name=names.PAUSE_UPDATE)
    async def pause(self) -> Progress:
        """Start no new variation, stop the running ones (their partial files are removed);
        returns once the job waits in state `paused`, holding no worker slot."""
        self._paused = True
        await workflow.wait_condition(
            lambda: self._state in _PAUSE_SETTLED or self._continuing  # the next run pauses
        )
        return self.progress()

    @pause.validator
    def _validate_pause(self) -> None:
        if self._state in _PAUSE_SETTLED - {"paused"} or self._cancel_requested:
            raise _refused(f"job is {self._state}; there is nothing to pause")
        if self._draining:
            raise _refused("job is draining; it ends once its running renders finish")

    @workflow.update(name=names.RESUME_UPDATE)
    def resume(self) -> Progress:
        """Go on where the paused job stopped: stopped variations render again from scratch."""
        self._paused = False
        if self._state == "paused":
            self._set_state("running")
        return self.progress()

    @resume.validator
    def _validate_resume(self) -> None:
        if not self._paused:
            raise _refused(f"job is {self._state}, not paused; there is nothing to resume")

    @workflow.update(name=names.DRAIN_UPDATE)
    def drain(self) -> Progress:
        """Start no new variations; the running ones finish, then the job ends `drained`.

        It may run before `run()` in a run's first workflow task (the SDK runs handlers
        first): `_resume` keeps what it set.
        """
        self._draining = True
        if self._state == "running":
            self._set_state("draining")
        return self.progress()

    @drain.validator
    def _validate_drain(self) -> None:
        if self._state in ("cancelled", "completed", "failed", "drained", "cleaning"):
            raise _refused(f"job is {self._state}; there is nothing to drain")

    # ---- the run ---------------------------------------------------------------------

    @workflow.run
    async def run(self, request: Any, carry: JobCarry | None = None) -> JobResult:
        """Run the job (or, after continue-as-new, its next chunk) to its end.

        `request` arrives as its JSON object: `parse_request` reads it (strictly, in runs
        with patch "strict-request"), so every bad request is refused with a clear error.
        """
        self._job_id = workflow.info().workflow_id
        # first, newest first: `_patched` reads them, and a new run records one marker
        self._refuse_alike = workflow.patched(REFUSE_ALIKE_PATCH)
        self._local_edges = self._refuse_alike or workflow.patched(LOCAL_EDGES_PATCH)
        self._paced = self._local_edges or workflow.patched(UPSERT_PACE_PATCH)
        try:
            strict = self._patched(STRICT_REQUEST_PATCH)
            job = parse_request(request, strict=strict)
            check_job_id(self._job_id, strict=strict)
        except RequestError as err:
            self._state = "failed"
            workflow.logger.warning("job %s refused: %s", self._job_id, err)  # not on replay
            # details[0] is None, as for every failure that has no result (the README's parent)
            raise ApplicationError(str(err), None, type=BAD_REQUEST, non_retryable=True) from None
        if isinstance(request, dict) and (ignored := ignored_fields(request)):
            workflow.logger.warning(  # a newer caller's option this worker cannot honour
                "job %s: ignoring request fields this version does not know: %s",
                self._job_id,
                ", ".join(ignored),
            )
        job = self._with_seed(job)
        self._total = len(job.inputs) * job.variations
        self._variations = job.variations
        stems = output_stems(job.inputs)
        if carry is not None:
            self._resume(carry)
        media: list[MediaInfo] = carry.media if carry else []
        next_index = carry.next_index if carry else 0
        outcome: FinalState | None = None
        cancel: asyncio.CancelledError | None = None
        self._percent_on = self._patched("varia-percent")
        self._priority = render_priority(job, self._job_id, self._patched("varia-fair"))
        self._ahead = self._patched(RENDER_AHEAD_PATCH)  # with the others: before any await
        self._push_again = self._patched(PUSH_AGAIN_PATCH)
        try:
            await self._load_search_attributes()
            raise_if_cancel_requested()
            if carry is None:
                self._set_state("preparing")
                prepared = await self._prepare(job)
                self._job_dir, media = prepared.job_dir, prepared.media
                raise_if_cancel_requested()
                self._set_state("draining" if self._draining else "running")
            self._pace = (self._percent(), workflow.time())
            next_index = await self._render_chunk(job, stems, media, next_index)
            if next_index < self._total and not self._draining and not self._halted:
                self._continuing = True
                await self._record_chunk()
                workflow.continue_as_new(args=[job, self._carry(media, next_index)])
        except asyncio.CancelledError as err:
            cancel = err
            self._cancel_requested = True
        except ActivityError as err:  # prepare or record was cancelled, or failed
            if is_cancelled_exception(err):
                cancel = asyncio.CancelledError()
                self._cancel_requested = True
            else:
                refused = error_type(err) in PREPARE_REFUSALS  # nothing written: fail as that
                bad_input = error_type(err) == BAD_INPUT and self._patched(BAD_INPUT_PATCH)
                self._remember_error(
                    own_message(err) if refused or bad_input else cause_message(err)
                )
                outcome = "failed"
                self._job_dir = self._job_dir or job_dir_from_failure(err)
                if refused or bad_input:
                    self._failure_type = error_type(err) or self._failure_type
        return await self._end(job, stems, outcome, cancel)

    def _with_seed(self, job: JobRequest) -> JobRequest:
        """The request with its seed resolved once, in the first run (continue-as-new passes
        the resolved seed on, so later runs never derive it again).

        A job without a seed gets `default_seed(job id)`. Runs started before seeds were
        derived defaulted to 0: their histories lack the `default-seed` marker and keep 0.
        """
        if job.seed is None:
            seed = default_seed(self._job_id) if self._patched(names.DEFAULT_SEED_PATCH) else 0
            job = job.model_copy(update={"seed": seed})
        assert job.seed is not None
        self._seed = job.seed
        return job

    async def _prepare(self, job: JobRequest, *, probe: bool = True) -> PreparedJob:
        """Run prepare to its end even if a cancel arrives: cleanup needs the job dir it made
        (`run` re-raises the cancel once it has the job dir; a failure is a prepare failure).
        `probe=False` only makes the job dir (`_dir_for_early_cancel`)."""
        request = PrepareRequest(
            job_id=self._job_id,
            inputs=job.inputs,
            output_dir=job.output_dir,
            variations=job.variations,
            chain=_chain(),
            probe=probe,
            threads=job.threads,
        )
        summary = "confine paths, create the job directory, probe the inputs"
        prepared: PreparedJob = await self._edge_step(
            JobActivities.prepare, request, names.PREPARE, summary, WAIT
        )
        return prepared

    async def _end(
        self,
        job: JobRequest,
        stems: list[str],
        outcome: FinalState | None,
        cancel: asyncio.CancelledError | None,
    ) -> JobResult:
        if outcome is None:
            outcome = self._final_state(cancelled=cancel is not None)
        if self._job_dir is None and cancel is not None:
            await self._dir_for_early_cancel(job)
        if self._job_dir is None:  # nothing was created: nothing to clean
            self._set_state(outcome)
            return self._raise_or_return(outcome, cancel, None)
        self._set_state("cleaning")
        try:
            self._result = await self._clean_up(self._cleanup_request(job, stems, outcome))
        except ActivityError as err:
            if not self._patched(CLEANUP_FAILURE_PATCH):
                raise
            raise self._cleanup_failed(err) from None
        self._outcome_lines = outcome_lines(self._result) if self._result else []
        self._set_state(outcome)
        return self._raise_or_return(outcome, cancel, self._result)

    def _cleanup_request(
        self, job: JobRequest, stems: list[str], outcome: FinalState
    ) -> CleanupRequest:
        assert self._job_dir is not None
        return CleanupRequest(
            job_id=self._job_id,
            job_dir=self._job_dir,
            state=outcome,
            inputs=job.inputs,
            stems=stems,
            variations=job.variations,
            seed=self._seed,
            results=self._results,
            failed=self._failed,
            errors=self._errors,
            use_ledger=self._runs > 1,
            chain=_chain(),
        )

    def _cleanup_failed(self, err: ActivityError) -> ApplicationError:
        """The job's failure when its cleanup failed (it wrote no manifest): cleanup's own
        words first, then what failed before; cleanup's type if it is one of varia's."""
        cleanup = f"cleanup failed: {own_message(err)}"
        message = f"{cleanup}; {self._reasons()}" if self._errors else cleanup
        self._remember_error(cleanup)
        self._set_state("failed")
        kind = error_type(err)
        kind = kind if kind in NON_RETRYABLE_TYPES else self._failure_type
        return ApplicationError(message, None, type=kind, non_retryable=True)

    async def _dir_for_early_cancel(self, job: JobRequest) -> None:
        """A job cancelled before prepare ran still ends with its manifest (the contract): make
        its directory without probing (patch "early-cancel-manifest"). If it cannot be made
        (say the output dir is not allowed), the job ends cancelled with nothing written."""
        if not self._patched(EARLY_CANCEL_MANIFEST_PATCH):
            return
        self._set_state("cancelling")
        try:
            self._job_dir = (await self._prepare(job, probe=False)).job_dir
        except ActivityError as err:
            workflow.logger.warning(  # not on replay
                "job %s cancelled before it started; no job directory: %s",
                self._job_id,
                cause_message(err),
            )

    def _final_state(self, cancelled: bool) -> FinalState:
        if self._completed == self._total:
            return "completed"  # completion wins, even over a cancel in flight
        if cancelled:
            return "cancelled"
        if self._failed:
            return "failed"
        return "drained" if self._draining else "completed"

    def _raise_or_return(
        self, outcome: FinalState, cancel: asyncio.CancelledError | None, result: JobResult | None
    ) -> JobResult:
        if outcome == "cancelled":
            raise cancel or asyncio.CancelledError()
        if outcome == "failed":
            raise ApplicationError(
                self._reasons(),
                result.model_dump() if result else None,
                type=self._failure_type,
                non_retryable=True,
            )
        assert result is not None
        return result

    def _reasons(self) -> str:
        """Why the job failed: its first errors, after how many variations failed."""
        reasons = "; ".join(self._errors[:5]) or "unknown error"
        if self._failed:
            reasons = f"{self._failed} of {self._total} variations failed: {reasons}"
        return reasons

    # ---- rendering -------------------------------------------------------------------

    async def _render_chunk(
        self, job: JobRequest, stems: list[str], media: list[MediaInfo], next_index: int
    ) -> int:
        """Render from `next_index` until the chunk is full, the job is done or it drains.

        Returns the index of the first variation not started. On cancellation, cancels the
        running renders, waits for each (a render that finishes anyway is kept) and re-raises.
        """
        chunk_end = min(self._total, next_index + (job.chunk_size or DEFAULT_CHUNK_SIZE))
        running: dict[asyncio.Task[RenderResult], RenderTask] = {}
        ahead = self._ahead
        in_flight = job.concurrency * (2 if ahead else 1)
        dropped: list[asyncio.Task[RenderResult]] = []  # cancelled by a drain (render-ahead)
        try:
            while True:
                next_index = self._skip_refused(next_index)
                while (
                    (self._redo or next_index < chunk_end)
                    and len(running) < in_flight
                    and not self._draining
                    and not self._halted
                    and not self._paused
                    and (self._redo or not workflow.info().is_continue_as_new_suggested())
                ):
                    if self._redo:
                        index = self._redo.pop(0)
                    else:
                        index, next_index = next_index, next_index + 1
                    task = self._plan(job, stems, media, index)
                    mate = None
                    if ahead:
                        task, mate = _in_slot(task, index, running, job.concurrency)
                    running[self._start_render(task, mate)] = task
                if self._pausing():
                    await self._pause_here(running, unstarted=next_index < self._total)
                    continue
                if not running:
                    return next_index
                if ahead and self._drain_unseen():
                    self._drain_seen = True
                    dropped = await _drop_queued(running)
                await workflow.wait_condition(
                    lambda: (
                        _any_done(running)() or self._pausing() or (ahead and self._drain_unseen())
                    ),
                    timeout=None,
                )
                for handle in [h for h in running if h.done()]:  # a dropped one was asked
                    self._collect(handle, running.pop(handle), cancelling=handle in dropped)
        except asyncio.CancelledError:
            self._cancel_requested = True  # with the state, in the task that received it
            self._set_state("cancelling")
            for handle in running:
                handle.cancel()
            if running and self._patched(PUSH_CANCEL_PATCH):
                pushes = await push_stop()
                if self._push_again:
                    self._follow_up = asyncio.ensure_future(
                        push_missed_again(pushes, lambda: _not_done(running))
                    )
            for handle, task in running.items():
                await workflow.wait_condition(handle.done)
                self._collect(handle, task, cancelling=True)
            raise

    def _drain_unseen(self) -> bool:
        """A drain arrived that the render loop has not acted on yet (render-ahead)."""
        return self._draining and not self._drain_seen

    def _pausing(self) -> bool:
        return self._paused and not self._draining and not self._halted

    async def _pause_here(
        self,
        running: dict[asyncio.Task[RenderResult], RenderTask],
        *,
        unstarted: bool,
    ) -> None:
        """Stop the running renders (a render that finishes anyway is kept), remove the
        stopped ones' partial files, then wait until resumed (or drained, or cancelled).

        If that leaves nothing to render (the last renders finished anyway), the pause has
        nothing to hold: it is dropped and the job ends (`PAUSE_WHEN_DONE_PATCH`).
        """
        for handle in running:
            handle.cancel()
        if running and self._patched(PUSH_CANCEL_PATCH):
            await push_stop(why="pause")  # renders stop at once, not at their next heartbeat
        stopped: list[RenderTask] = []
        for handle, task in list(running.items()):
            await workflow.wait_condition(handle.done)
            if self._collect(handle, task, cancelling=True) == "stopped":
                stopped.append(task)
            del running[handle]
        self._redo = sorted(
            [*self._redo, *(t.input_index * self._variations + t.variation for t in stopped)]
        )
        if stopped:
            assert self._job_dir is not None
            await workflow.execute_activity_method(
                JobActivities.discard,
                DiscardRequest(
                    job_id=self._job_id,
                    job_dir=self._job_dir,
                    names=[task.temp_name for task in stopped],
                    chain=_chain(),
                ),
                start_to_close_timeout=timedelta(minutes=2),
                heartbeat_timeout=LIGHT_HEARTBEAT_TIMEOUT,
                retry_policy=IO_RETRY,
                priority=self._priority,
                summary=f"remove the partial files of {len(stopped)} paused render(s)",
            )
        if (
            self._pausing()
            and not (self._redo or unstarted)
            and self._patched(PAUSE_WHEN_DONE_PATCH)
        ):
            self._paused = False  # every variation has ended: completion wins over the pause
        if self._pausing():
            self._set_state("paused")
            await workflow.wait_condition(lambda: not self._pausing())
        if self._state == "paused":
            self._set_state("draining" if self._draining else "running")

    def _plan(
        self, job: JobRequest, stems: list[str], media: list[MediaInfo], index: int
    ) -> RenderTask:
        input_index, variation = divmod(index, job.variations)
        assert self._job_dir is not None
        return RenderTask(
            job_dir=self._job_dir,
            input_index=input_index,
            variation=variation,
            media=media[input_index],
            recipe=make_recipe(self._seed, input_index, variation),
            output_name=output_name(stems[input_index], variation, job.variations),
            threads=job.threads,
            seed=self._seed,
            bounds=strength_bounds(job),
        )

    def _start_render(
        self, task: RenderTask, mate: RenderTask | None = None
    ) -> asyncio.Task[RenderResult]:
        """Schedule a render; `mate`: the render in flight in its job slot, whose FFmpeg it
        waits for (its start-to-close covers both)."""
        self._running[(task.input_index, task.variation)] = task
        self._update_details()
        timeout = render_start_to_close(task.media, task.recipe)
        if mate is not None:
            timeout += render_start_to_close(mate.media, mate.recipe)
        handle = workflow.start_activity_method(
            JobActivities.render,
            task,
            activity_id=names.render_activity_id(task.input_index, task.variation),
            task_queue=render_task_queue(workflow.info().task_queue),
            start_to_close_timeout=timeout,
            heartbeat_timeout=RENDER_HEARTBEAT_TIMEOUT,
            retry_policy=RENDER_RETRY,
            cancellation_type=WAIT,
            priority=self._priority,
            summary=f"{task.output_name}: {recipe_summary(task.recipe)}",
        )
        return asyncio.ensure_future(completion_wins(handle))

    def _collect(
        self, handle: asyncio.Task[RenderResult], task: RenderTask, cancelling: bool = False
    ) -> str:
        """Move a finished render into the completion record (or count its failure); says
        which: `completed`, `failed` or `stopped`.

        While cancelling, a render that timed out (it did not stop in time) counts as
        cancelled, not failed: the cancel asked it to stop, and cleanup removes its file.
        """
        self._running.pop((task.input_index, task.variation), None)
        self._fractions.pop((task.input_index, task.variation), None)
        outcome = "stopped"
        try:
            result = handle.result()
        except asyncio.CancelledError:
            pass  # cancelled before it started, or stopped: its partial file is cleaned up
        except ActivityError as err:
            if not counts_as_stopped(err, cancelling):
                outcome = "failed"
                self._failed += 1
                self._halted = self._halted or error_type(err) == NO_SPACE
                if self._refuse_alike:
                    self._refuse_alike_of(err, task)
                label, message = f"{task.media.path} variation {task.variation}", cause_message(err)
                self._remember_error(
                    message if f"{label}:" in message else f"{label}: {message}"
                )  # said once: the render's own message may name them already
        else:
            outcome = "completed"
            self._results.append(result)
            self._completed += 1
        if self._percent_on and self._percent_upsert_due():
            self._upsert_search_attributes()
        self._update_details()
        return outcome

    def _refuse_alike_of(self, err: ActivityError, task: RenderTask) -> None:
        """A failed render that every render like it would meet alike stops them from being
        started (patch "refuse-alike"): its job directory gone, the job's; its input refused
        (`BadInput`: changed or gone since the probe), that input's (`_skip_refused`)."""
        if halts_job(err):
            self._halted = True
        elif error_type(err) == BAD_INPUT:
            self._refused_inputs.setdefault(task.input_index, task.media.path)

    def _skip_refused(self, next_index: int) -> int:
        """Count the variations not started of each refused input as failed, said once per
        input, and drop them; returns the next index to start (past them)."""
        if not self._refused_inputs:
            return next_index
        skipped: dict[int, int] = {}
        for index in self._redo:  # stopped by a pause, not started again yet
            if (input_index := index // self._variations) in self._refused_inputs:
                skipped[input_index] = skipped.get(input_index, 0) + 1
        self._redo = [i for i in self._redo if i // self._variations not in self._refused_inputs]
        while (input_index := next_index // self._variations) in self._refused_inputs:
            end = (input_index + 1) * self._variations  # its first variation after them
            skipped[input_index] = skipped.get(input_index, 0) + end - next_index
            next_index = end
        for input_index, count in sorted(skipped.items()):
            self._failed += count
            self._remember_error(
                f"{self._refused_inputs[input_index]}: {count} more variation(s) not started: "
                "a render refused this input (above), and each of them would be refused alike"
            )
        if skipped:
            self._update_details()
        return next_index

    def _percent_upsert_due(self) -> bool:
        """Whether a finished render moves the search attributes: always in runs recorded before
        patch "percent-steps"; after it, when the whole percent changes or the last one ends;
        after "upsert-pace", a whole percent's change also waits for `UPSERT_GAP_S`. The
        `progress` query stays exact; the attributes lag it by under 1 % or under 2 s."""
        if not self._patched(PERCENT_STEPS_PATCH):
            return True
        finished = self._completed + self._failed
        if finished >= self._total:
            return True
        moved = int(self._percent()) != int(self._upserted_percent)
        return moved and self._progress_upsert_allowed()

    def _patched(self, patch_id: str) -> bool:
        """`workflow.patched(patch_id)` for a patch older than "upsert-pace": true without a
        marker in runs that recorded that one or "local-edges" (every earlier patch holds in
        them), so a new job's history carries one patch marker, not one per patch. Runs
        recorded before it ask `workflow.patched` as they always did and replay unchanged."""
        return self._paced or workflow.patched(patch_id)

    def _progress_upsert_allowed(self) -> bool:
        """Whether progress may be upserted now: always in runs recorded before "upsert-pace";
        after it, once `UPSERT_GAP_S` of the job's time passed since this run's last upsert (a
        state change does not wait)."""
        if not self._paced or self._upserted_at is None:
            return True
        return workflow.time() - self._upserted_at >= UPSERT_GAP_S

    # ---- continue-as-new -------------------------------------------------------------

    def _resume(self, carry: JobCarry) -> None:
        """Restore the carried state, keeping what a handler already set in this run.

        An update handler can run before `run()` in the run's first workflow task: a drain
        accepted there must not be overwritten by the carried `draining=False`.
        """
        self._job_dir = carry.job_dir
        self._completed, self._failed = carry.completed, carry.failed
        early_drain = self._draining and not carry.draining
        if not (early_drain and self._patched(KEEP_EARLY_DRAIN)):
            self._draining = carry.draining  # (histories from before the fix take this path)
        self._errors, self._runs = list(carry.errors), carry.runs
        self._paused = self._paused or carry.paused
        self._set_state("draining" if self._draining else "running")

    def _carry(self, media: list[MediaInfo], next_index: int) -> JobCarry:
        assert self._job_dir is not None
        return JobCarry(
            job_dir=self._job_dir,
            media=media,
            next_index=next_index,
            completed=self._completed,
            failed=self._failed,
            draining=self._draining,
            errors=self._errors,
            runs=self._runs + 1,
            paused=self._paused,
        )

    async def _record_chunk(self) -> None:
        assert self._job_dir is not None
        await workflow.execute_activity_method(
            JobActivities.record,
            LedgerAppend(
                job_id=self._job_id, job_dir=self._job_dir, results=self._results, chain=_chain()
            ),
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=LIGHT_HEARTBEAT_TIMEOUT,
            retry_policy=IO_RETRY,
            priority=self._priority,
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    # ---- cleanup ---------------------------------------------------------------------

    async def _clean_up(self, request: CleanupRequest) -> JobResult:
        """Run cleanup to its end; a cancel that arrives meanwhile does not interrupt it."""
        summary = f"cleanup and manifest ({request.state})"
        result: JobResult = await self._edge_step(
            JobActivities.clean_up, request, names.FINISH, summary, TRY_CANCEL
        )
        return result

    async def _edge_step(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        activity_type: str,
        summary: str,
        cancellation_type: workflow.ActivityCancellationType,
    ) -> Any:
        """Run prepare or cleanup to its end although a cancel arrives: a local activity in
        runs with patch "local-edges" (its failure raised as an activity's, `local_step`), an
        activity on the job's queue in runs recorded before it."""
        step: Awaitable[Any]
        if self._local_edges:
            step = local_step(
                workflow.start_local_activity_method(
                    method,
                    request,
                    start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                    retry_policy=IO_RETRY,
                    cancellation_type=cancellation_type,
                    summary=summary,
                ),
                activity_type,
            )
        else:
            step = workflow.start_activity_method(
                method,
                request,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=LIGHT_HEARTBEAT_TIMEOUT,
                retry_policy=IO_RETRY,
                cancellation_type=cancellation_type,
                priority=self._priority,
                summary=summary,
            )
        return await run_to_end_in_workflow(step, self._note_cancel)

    def _note_cancel(self) -> None:
        """A cancel reached a step that runs to its end: note it in the task that received
        it (the `progress` query says so at once)."""
        self._cancel_requested = True

    # ---- operator view ---------------------------------------------------------------

    async def _load_search_attributes(self) -> None:
        try:
            self._search_attributes = await workflow.execute_local_activity_method(
                JobActivities.search_attributes,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
        except ActivityError:
            self._search_attributes = []
        self._upsert_search_attributes()

    def _set_state(self, state: JobState) -> None:
        self._state = state
        self._upsert_search_attributes()
        self._update_details()

    def _upsert_search_attributes(self) -> None:
        values = search_attribute_updates(
            self._search_attributes,
            self._state,
            self._completed,
            self._total,
            self._percent() if self._percent_on else None,
        )
        if values and changed(values, workflow.info().typed_search_attributes):
            workflow.upsert_search_attributes(values)
            self._upserted_at = workflow.time()
            if self._percent_on:
                self._upserted_percent = self._percent()

    def _percent(self) -> float:
        """The weighted percent: finished variations plus the running ones' fractions."""
        return weighted_percent(
            self._total, self._completed + self._failed, self._fractions.values()
        )

    def _eta_s(self) -> float | None:
        if self._pace is None or self._state not in ("running", "draining"):
            return None
        percent_then, then = self._pace
        return job_eta_s(self._percent(), percent_then, workflow.time() - then)

    def _update_details(self) -> None:
        workflow.set_current_details(
            details_text(self.progress(), self._fractions, self._result, self._outcome_lines)
        )

    def _remember_error(self, message: str) -> None:
        self._errors = [*self._errors, message][-MAX_ERRORS_KEPT:]


def _refused(reason: str) -> ApplicationError:
    """An update's refusal: typed, so callers can match it, and not retryable."""
    return ApplicationError(reason, type=UPDATE_REFUSED, non_retryable=True)


def _chain() -> str:
    """The execution chain's identity: its first run id (kept by continue-as-new, workflow
    retries and resets; new for a later execution under a reused workflow id)."""
    return workflow.info().first_execution_run_id


_PAUSE_SETTLED = frozenset(
    {"paused", "cancelling", "cleaning", "completed", "cancelled", "failed", "drained"}
)
"""States in which a pause request has taken effect or no longer can."""


def _not_done(running: dict[asyncio.Task[RenderResult], RenderTask]) -> set[str]:
    """The activity ids of the renders that have not ended."""
    return {
        names.render_activity_id(task.input_index, task.variation)
        for handle, task in running.items()
        if not handle.done()
    }


def _any_done(running: dict[asyncio.Task[RenderResult], RenderTask]) -> Callable[[], bool]:
    return lambda: any(handle.done() for handle in running)


def _in_slot(
    task: RenderTask,
    order: int,
    running: dict[asyncio.Task[RenderResult], RenderTask],
    slots: int,
) -> tuple[RenderTask, RenderTask | None]:
    """The task placed in the job slot with the fewest renders in flight (the lowest such
    number), following the render already in flight there, if any; and that render
    (patch "render-ahead")."""
    in_slot: dict[int, list[RenderTask]] = {slot: [] for slot in range(slots)}
    for other in running.values():
        if other.slot is not None and other.slot in in_slot:
            in_slot[other.slot].append(other)
    slot = min(in_slot, key=lambda k: (len(in_slot[k]), k))
    mate = in_slot[slot][-1] if in_slot[slot] else None
    placed = task.model_copy(
        update={"slot": slot, "order": order, "follows": mate.order if mate else None}
    )
    return placed, mate


async def _drop_queued(
    running: dict[asyncio.Task[RenderResult], RenderTask],
) -> list[asyncio.Task[RenderResult]]:
    """A drain starts no new variation: cancel the renders scheduled behind another in their
    job slot (they wait for it, or have only just started), pushing the stop to their worker;
    returns them (one that timed out meanwhile, its worker gone, was stopped, not failed)."""
    seen: set[int | None] = set()
    behind: list[asyncio.Task[RenderResult]] = []
    for handle, task in running.items():  # in the order they were scheduled
        if task.slot in seen:
            behind.append(handle)
        seen.add(task.slot)
    for handle in behind:
        handle.cancel()
    if behind:
        await push_stop(
            {
                names.render_activity_id(t.input_index, t.variation)
                for t in map(running.get, behind)
                if t
            },
            why="drain",
        )
    return behind
