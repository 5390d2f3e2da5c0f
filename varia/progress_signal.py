"""A long render tells its workflow how far it is, at coarse steps (25/50/75 %).

Each step costs the job's history a signal event and usually a workflow task, so renders
projected to take less than `VARIA_PROGRESS_MIN_RENDER` seconds send none: a job of short
renders pays nothing, a job of long ones at most three signals per variation. The default
(30 s) keeps renders of the benchmark's medium shape (5-10 s each, finished soon enough to move
the percent themselves) from paying about 1 % of FFmpeg's CPU in signals and workflow tasks.
A signal that fails (the run closed meanwhile) is dropped; the job's percent only lags.
"""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio import activity

from varia import names
from varia.models import RenderProgress, RenderTask
from varia.percent import next_step

log = logging.getLogger("varia.activities")

_in_flight: set[asyncio.Future[None]] = set()  # keeps fire-and-forget signals referenced


class ProgressSignaller:
    """Sends `render_progress` to the render's own workflow run when a step is reached."""

    def __init__(self, task: RenderTask, min_render_s: float) -> None:
        self.task = task
        self.min_render_s = min_render_s
        self.started = time.monotonic()
        self.sent = 0.0

    def ffmpeg_started(self) -> None:
        """Start the clock the projection runs on: the render's own FFmpeg, not its wait for
        the job's slot (a queued render waits about one render; counting it projected short
        renders long enough to signal)."""
        self.started = time.monotonic()

    def tick(self, fraction: float) -> None:
        """Called on every progress report; sends at most one signal per step."""
        step = next_step(fraction, self.sent)
        if step is None:
            return
        projected = (time.monotonic() - self.started) / step
        if projected < self.min_render_s:
            return
        self.sent = step
        info = activity.info()
        if not info.workflow_id:
            return
        handle = activity.client().get_workflow_handle(
            info.workflow_id, run_id=info.workflow_run_id
        )
        report = RenderProgress(
            input_index=self.task.input_index, variation=self.task.variation, fraction=step
        )
        sending = asyncio.ensure_future(handle.signal(names.RENDER_PROGRESS_SIGNAL, report))
        _in_flight.add(sending)
        sending.add_done_callback(_forget)


def _forget(sending: asyncio.Future[None]) -> None:
    _in_flight.discard(sending)
    if not sending.cancelled() and sending.exception() is not None:
        log.debug("render progress signal dropped: %s", sending.exception())
