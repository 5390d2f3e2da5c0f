"""A render's start-to-close comes from its input (pure; no server)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from varia.models import MediaInfo, Recipe
from varia.timeouts import RENDER_CEILING, RENDER_FLOOR, render_start_to_close


def info(duration_s: float, width: int, height: int, fps: float = 30.0) -> MediaInfo:
    return MediaInfo(
        path="/in/a.mp4",
        duration_s=duration_s,
        width=width,
        height=height,
        fps=fps,
        has_audio=True,
    )


def test_small_clip_gets_the_floor_and_long_4k_gets_days() -> None:
    small = render_start_to_close(info(20, 640, 360), Recipe())
    assert RENDER_FLOOR <= small < RENDER_FLOOR + timedelta(minutes=2)
    four_k = render_start_to_close(info(2 * 3600, 3840, 2160), Recipe())
    # 2 h of 4K at 30 fps: 1.8e12 pixels; even at 4 Mpx/s (a 4K frame every 2 s) it fits.
    assert four_k > timedelta(days=5)
    assert render_start_to_close(info(1e9, 3840, 2160), Recipe()) == RENDER_CEILING


def test_speed_shortens_the_output_and_so_the_budget() -> None:
    media = info(3600, 1920, 1080)
    assert render_start_to_close(media, Recipe(speed=1.25)) < render_start_to_close(
        media, Recipe(speed=0.8)
    )


@given(
    duration=st.floats(0.01, 1e7),
    width=st.integers(1, 16384),
    height=st.integers(1, 16384),
    fps=st.floats(0.0, 1000.0),
    speed=st.floats(0.5, 2.0),
    more=st.floats(1.0, 10.0),
)
def test_bounded_and_monotonic(
    duration: float, width: int, height: int, fps: float, speed: float, more: float
) -> None:
    budget = render_start_to_close(info(duration, width, height, fps), Recipe(speed=speed))
    assert RENDER_FLOOR <= budget <= RENDER_CEILING
    longer = render_start_to_close(info(duration * more, width, height, fps), Recipe(speed=speed))
    assert longer >= budget
