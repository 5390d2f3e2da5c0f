"""varia's metrics: the SDK runtime's Prometheus endpoint, and the render metrics on its meter.

Everything goes through the Temporal SDK: `make_runtime` serves `/metrics` (the SDK's own
worker metrics and varia's), and the render activity records varia's metrics on
`activity.metric_meter()`, which tags them with namespace, task queue and activity type.
A metric that cannot be recorded never fails a render.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import ParamSpec

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from varia.config import Settings, SettingsError
from varia.errors import STOPPED_FOR_CANCEL
from varia.models import RenderResult

log = logging.getLogger("varia.metrics")
P = ParamSpec("P")

COMPLETED = "varia_variations_completed"
FAILED = "varia_variations_failed"
CANCELLED = "varia_variations_cancelled"
BYTES_WRITTEN = "varia_bytes_written"
RENDER_SECONDS = "varia_render_seconds"
SLOT_WAIT_SECONDS = "varia_render_slot_wait_seconds"
CANCEL_TO_EXIT_SECONDS = "varia_cancel_to_exit_seconds"
KILL_STAGE = "varia_kill_stage_reached"
STOP_STAGES = ("q", "term", "kill", "stuck")
"""The `stage` attribute of `varia_kill_stage_reached`: `q` on stdin, SIGTERM, SIGKILL, or
`stuck` (still there a stage after SIGKILL; the render gave up waiting)."""

BUCKETS: Mapping[str, list[float]] = {
    RENDER_SECONDS: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    SLOT_WAIT_SECONDS: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600],
    CANCEL_TO_EXIT_SECONDS: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16],
}


def metrics_address(settings: Settings) -> str | None:
    """host:port of the Prometheus endpoint, or None when `VARIA_METRICS_PORT` is unset."""
    if settings.metrics_port is None:
        return None
    host = settings.metrics_host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{host}:{settings.metrics_port}"


def make_runtime(settings: Settings) -> Runtime | None:
    """An SDK runtime serving Prometheus metrics, or None (metrics off)."""
    address = metrics_address(settings)
    if address is None:
        return None
    config = PrometheusConfig(
        bind_address=address,
        counters_total_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides=BUCKETS,
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config))
    except Exception as err:
        raise SettingsError(
            f"VARIA_METRICS_PORT={settings.metrics_port}: cannot serve metrics on {address}: {err}"
        ) from None


def _meter() -> MetricMeter:
    try:
        return activity.metric_meter()
    except RuntimeError:
        return MetricMeter.noop


def _count(name: str, description: str, value: int = 1, **attributes: str) -> None:
    with contextlib.suppress(Exception):
        _meter().create_counter(name, description).add(value, attributes or None)


def _observe(name: str, description: str, seconds: float) -> None:
    with contextlib.suppress(Exception):
        _meter().create_histogram_float(name, description, "s").record(seconds)


def kill_stage_reached(stage: str | None) -> None:
    """Count a stop of FFmpeg by the stage that ended it (`q`, `term`, `kill` or `stuck`)."""
    if stage in STOP_STAGES:
        _count(KILL_STAGE, "FFmpeg stops, by the stage that ended them.", stage=str(stage))


class _CancelClock:
    """Stamps the moment a cancellation reached the current activity (SDK or pushed), and
    adds up the time it waited for its job slot (render-ahead)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.waited_for_slot = 0.0
        self._tasks = [asyncio.ensure_future(self._watch(activity.wait_for_cancelled))]

    async def _watch(self, arrival: Callable[[], Awaitable[object]]) -> None:
        await arrival()  # made here: a task cancelled before it ran leaves no coroutine unawaited
        if self.at is None:
            self.at = time.monotonic()

    def watch_push(self, pushed: asyncio.Event) -> None:
        """Also stamp the moment `pushed` is set (a cancel pushed to this worker)."""
        self._tasks.append(asyncio.ensure_future(self._watch(pushed.wait)))

    def stop(self) -> float | None:
        """Seconds from the cancellation to now, or None if none arrived."""
        for task in self._tasks:
            task.cancel()
        return None if self.at is None else time.monotonic() - self.at


_clock: contextvars.ContextVar[_CancelClock | None] = contextvars.ContextVar(
    "varia_cancel_clock", default=None
)


def slot_waited(seconds: float) -> None:
    """Record that the current render waited `seconds` for its job slot (not render time)."""
    _observe(SLOT_WAIT_SECONDS, "Time a render waited for its job slot (render-ahead).", seconds)
    clock = _clock.get()
    if clock is not None:
        clock.waited_for_slot += seconds


def watch_push(pushed: asyncio.Event) -> None:
    """Count a pushed cancel's arrival in the current render's cancel-to-exit time."""
    clock = _clock.get()
    if clock is not None:
        clock.watch_push(pushed)


def render_metrics(
    render: Callable[P, Awaitable[RenderResult]],
) -> Callable[P, Awaitable[RenderResult]]:
    """Decorate the render activity: count its outcome, bytes, render and cancel-to-exit time.

    A cancelled render that finished anyway counts as completed (completion wins); a failed
    attempt is counted with its error type as `reason`, retried or not.
    """

    @functools.wraps(render)
    async def measured(*args: P.args, **kwargs: P.kwargs) -> RenderResult:
        started = time.monotonic()
        clock = _CancelClock()
        token = _clock.set(clock)
        try:
            result = await render(*args, **kwargs)
        except asyncio.CancelledError:
            _count(CANCELLED, "Render attempts ended by a cancellation.")
            raise
        except Exception as err:
            reason = err.type if isinstance(err, ApplicationError) and err.type else "error"
            if reason == STOPPED_FOR_CANCEL:
                _count(CANCELLED, "Render attempts ended by a cancellation.")
            else:
                _count(FAILED, "Render attempts that failed.", reason=reason)
            raise
        finally:
            _clock.reset(token)
            waited = clock.stop()
            if waited is not None:
                _observe(CANCEL_TO_EXIT_SECONDS, "Cancel arrival to render exit.", waited)
        _count(COMPLETED, "Variations rendered and in place.")
        _count(BYTES_WRITTEN, "Bytes of finished outputs.", result.bytes)
        rendered = time.monotonic() - started - clock.waited_for_slot
        _observe(
            RENDER_SECONDS, "Wall time of a completed render, without its slot wait.", rendered
        )
        return result

    return measured
