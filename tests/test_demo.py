"""`varia demo` (what `make demo` runs): completes, and stops everything it started."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.helpers import as_foreground_job, processes_mentioning, wait_for


async def start_demo(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's server DB lands under tmp_path
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "varia",
        "demo",
        "--out",
        str(tmp_path / "demo"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=as_foreground_job,
    )


async def test_demo_renders_and_prints_outputs(tmp_path: Path) -> None:
    demo = await start_demo(tmp_path, "-n", "2", "--seconds", "1")
    stdout, stderr = await demo.communicate()
    assert demo.returncode == 0, stderr.decode()
    text = stdout.decode()
    outputs = [Path(line.strip()) for line in text.splitlines() if line.strip().endswith(".mp4")]
    rendered = [path for path in outputs if "_v00" in path.name]
    assert len(rendered) == 2 and all(path.is_absolute() and path.is_file() for path in rendered)
    assert "/namespaces/default/workflows/" in text
    assert processes_mentioning(str(tmp_path)) == []


async def test_ctrl_c_stops_server_worker_and_ffmpeg(tmp_path: Path) -> None:
    demo = await start_demo(tmp_path, "-n", "3", "--seconds", "20")
    try:
        await wait_for(
            lambda: any(
                "ffmpeg" in " ".join(p.cmdline()) and ".part" in " ".join(p.cmdline())
                for p in processes_mentioning(str(tmp_path / "demo"))
            ),
            timeout_s=90,
            what="the demo's FFmpeg to start rendering",
        )
        demo.send_signal(signal.SIGINT)
        _, stderr = await demo.communicate()
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    assert demo.returncode == 130, stderr.decode()
    assert "stopped" in stderr.decode()
    assert processes_mentioning(str(tmp_path)) == []
