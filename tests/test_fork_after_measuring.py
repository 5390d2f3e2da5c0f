"""A process that has measured frames can still fork with a `preexec_fn`.

The fork child of a `preexec_fn` spawn runs Python, which frees the other threads'
thread-local objects. A swscale context or filter graph with its own slice threads, freed
there, waits forever for threads the child does not have (`pthread_cond_destroy`), and the
parent waits forever for the child's exec: a worker (or a test that runs one in-process) hung
on its next FFmpeg or CLI spawn. Measured in a child interpreter, killed on a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from varia.clips import make_clip

CHILD = """
import gc, subprocess, sys, threading
from concurrent.futures import ThreadPoolExecutor
from varia import frames, quality

clip = sys.argv[1]
pool = ThreadPoolExecutor(2)  # kept alive, as the event loop's default executor is

def measure():
    samples = [frames.luma(f) for f in frames.frames_at(clip, [0.5, 1.0])]
    frames.thumbnail(frames.frames_at(clip, [0.5])[0], 160, 90)
    return quality.compare(samples, samples)

print(pool.submit(measure).result(), flush=True)
gc.collect()
subprocess.run(["true"], preexec_fn=lambda: None, check=True)
print("spawned", flush=True)
"""


def test_a_spawn_with_preexec_fn_after_measuring_in_a_thread(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2.0, size="1280x720")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(clip)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the whole group can be killed, a stuck fork child included
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(
            "the spawn after measuring hung (a freed threaded libav context)"
        ) from None
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == "spawned", out
