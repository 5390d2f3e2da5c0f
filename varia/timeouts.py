"""How long a render may take (its start-to-close timeout), from the input it renders (pure).

A fixed limit either cuts off a long 4K input that is still progressing or lets a tiny clip's
wedged render run for hours. Stalls and dead workers are caught sooner by the stall timeout
and the heartbeat timeout; this bounds a render that progresses far too slowly.
"""

from __future__ import annotations

import math
from datetime import timedelta

from varia.models import MediaInfo, Recipe

RENDER_FLOOR = timedelta(minutes=30)
"""Every render gets at least this long (a small clip on a busy, throttled worker)."""
RENDER_CEILING = timedelta(days=30)
"""No render gets longer, whatever its input declares."""
SLOW_PIXEL_RATE = 4_000_000
"""Output pixels per second that even a slow, shared core encodes with varia's filters: about
a tenth of one libx264 `veryfast` thread on 720p here (a 4K frame every two seconds)."""


def render_start_to_close(media: MediaInfo, recipe: Recipe) -> timedelta:
    """The floor plus the render's work (output frames times frame pixels) at a slow pixel rate."""
    frames = media.duration_s / recipe.speed * max(media.fps, 1.0)
    work_s = frames * max(media.width, 1) * max(media.height, 1) / SLOW_PIXEL_RATE
    budget = RENDER_FLOOR + timedelta(seconds=math.ceil(work_s))
    return min(budget, RENDER_CEILING)
