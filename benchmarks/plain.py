"""The baseline: generated clips and the very same FFmpeg argv run by a plain asyncio pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varia import media
from varia.clips import make_clip
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.ffmpeg.process import spawn
from varia.models import MediaInfo, RenderTask
from varia.recipes import make_recipe, output_name, output_stems


@dataclass(frozen=True)
class Clip:
    """A generated input and what probing it found."""

    path: Path
    info: MediaInfo

    def fresh(self) -> Clip:
        """The same bytes under a new name (a hard link beside it), as a job's new input:
        a worker's per-input caches (the source's measured samples) start cold, as they do
        for every real job, instead of flattering each job after the first."""
        link = self.path.with_name(f"{self.path.stem}-{secrets.token_hex(4)}{self.path.suffix}")
        os.link(self.path, link)
        return Clip(link, media.probe(str(link)))


def clip(directory: Path, name: str, *, seconds: float, size: str, audio: bool = True) -> Clip:
    """Generate a `testsrc2` clip (cached by name in `directory`) and probe it."""
    path = directory / f"{name}.mp4"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        make_clip(path, seconds=seconds, size=size, audio=audio)
    return Clip(path, media.probe(str(path)))


def tasks_for(
    clips: list[Clip], variations: int, job_dir: Path, *, seed: int = 0, threads: int | None = None
) -> list[RenderTask]:
    """The render tasks a job of these inputs plans, in the workflow's order."""
    stems = output_stems([str(c.path) for c in clips])
    return [
        RenderTask(
            job_dir=str(job_dir),
            input_index=i,
            variation=v,
            media=c.info,
            recipe=make_recipe(seed, i, v),
            output_name=output_name(stems[i], v, variations),
            threads=threads,
        )
        for i, c in enumerate(clips)
        for v in range(variations)
    ]


def argvs_for(tasks: list[RenderTask]) -> list[list[str]]:
    """The FFmpeg argv of each task, exactly as the render activity builds it."""
    ffmpeg = Settings().ffmpeg_path()
    return [build_render_argv(ffmpeg, t, Path(t.job_dir) / t.temp_name) for t in tasks]


async def _run_one(argv: list[str]) -> None:
    proc = await spawn(argv)
    try:
        assert proc.stdin is not None
        proc.stdin.close()  # nothing to say; FFmpeg just sees EOF
        _, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"FFmpeg failed ({proc.returncode}): {err.decode()[-300:]}")


async def run_plain(argvs: list[list[str]], parallelism: int) -> float:
    """Run every argv with at most `parallelism` at once; return the wall time in seconds."""
    if argvs:
        Path(argvs[0][-1].removeprefix("file:")).parent.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(parallelism)

    async def gated(argv: list[str]) -> None:
        async with gate:
            await _run_one(argv)

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for argv in argvs:
            group.create_task(gated(argv))
    return time.monotonic() - started


def frames_by_plain_seeks(path: str, times_s: list[float]) -> list[Any]:
    """The plain way to sample a file (the reference `varia.frames.frames_at` must equal, and
    beat): for each time, a backward seek to a frame past it, then every frame decoded on to
    the first at or after the time less half a frame (the last past the end)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        rate = stream.average_rate or stream.guessed_rate
        assert rate
        frame_s = 1.0 / float(rate)
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        picked = []
        for t in times_s:
            at = start + t
            container.seek(int((at + frame_s) / stream.time_base), stream=stream, backward=True)
            last = None
            for frame in container.decode(stream):  # to the wanted frame, not the end
                if frame.time is None:
                    continue
                last = frame
                if frame.time >= at - frame_s / 2:
                    break
            assert last is not None, f"{path}: no frame at {t} s"
            picked.append(last)
    return picked
