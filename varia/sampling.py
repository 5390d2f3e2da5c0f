"""Where varia samples frames to measure an output: pure, shared by the argv builder and the
measurement (so the output's keyframes sit exactly where the measurement seeks).

The positions are relative (0..1 of the duration), so a speed change does not misalign the
source and the output: the frame at 50 % of the output shows the frame at 50 % of the source.
"""

from __future__ import annotations

SAMPLE_POSITIONS: tuple[float, ...] = (0.25, 0.5, 0.75)
"""Relative positions of the frames measured in every output (and its source)."""

SHEET_POSITION = 0.5
"""The position shown on the contact sheet (one of `SAMPLE_POSITIONS`)."""


def sample_times(duration_s: float) -> list[float]:
    """The sample positions in seconds of a stream lasting `duration_s` (rounded to 1 ms)."""
    return [round(position * duration_s, 3) for position in SAMPLE_POSITIONS]


def force_key_frames(duration_s: float) -> str:
    """FFmpeg's `-force_key_frames` value: a keyframe at every sample time, so measuring an
    output decodes one frame per sample instead of a whole group of pictures."""
    return ",".join(f"{t:.3f}" for t in sample_times(duration_s))
