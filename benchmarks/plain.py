"""The baseline: generated clips and the very same FFmpeg argv run by a plain asyncio pool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

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
