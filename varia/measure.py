"""What the render activity adds to a finished output's result: the record that reproduces and
verifies it (recipe, SHA-256, FFmpeg build, varia version, argv) and its measured difference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from varia.models import RenderResult, RenderTask
from varia.provenance import VARIA_VERSION, ffmpeg_build, sha256_of
from varia.sampling import sample_times

if TYPE_CHECKING:
    import av

log = logging.getLogger("varia.measure")


def output_samples(
    container: av.container.InputContainer, path: Path, task: RenderTask
) -> list[av.VideoFrame] | None:
    """The output's samples (the frames `complete_result` measures) from a container already
    open (the output check's); None if they do not decode there (measuring then opens the
    file itself and logs what fails)."""
    import av.error

    from varia.frames import FrameError, frames_in

    try:
        return frames_in(container, sample_times(task.expected_duration_s), str(path))
    except (FrameError, av.error.FFmpegError, OSError, ValueError, KeyError):
        return None


def complete_result(
    result: RenderResult,
    final: Path,
    task: RenderTask,
    argv: list[str],
    read: Path | None = None,
    frames: Sequence[av.VideoFrame] | None = None,
) -> RenderResult:
    """The result with its record and quality filled in (blocking: run it in a thread).

    `read` is where the output's bytes are now, if not yet at `final` (before its rename);
    `frames` its samples if already decoded (`output_samples`).
    A measurement that fails leaves `quality` empty (logged); the output is still kept.
    """
    import av.error

    from varia import quality, sheet
    from varia.frames import FrameError

    shown = sheet.may_show(task.input_index, task.variation)
    cell = final.parent / sheet.cell_name(final.name) if shown else None
    try:
        measured = quality.measure(
            task.media.path,
            task.media.duration_s,
            str(read or final),
            task.expected_duration_s,
            cell,
            frames,
        )
    except (FrameError, av.error.FFmpegError, OSError, ValueError, KeyError) as err:
        log.warning("could not measure %s: %s", final, err)
        measured = None
    return result.model_copy(
        update={
            "recipe": task.recipe,
            "quality": measured,
            "sha256": sha256_of(read or final),
            "ffmpeg": ffmpeg_build(argv[0]),
            "varia_version": VARIA_VERSION,
            "argv": argv,
        }
    )
