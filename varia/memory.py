"""Fixed glibc malloc thresholds for a long-running worker.

glibc serves a request of at least the mmap threshold (128 KiB at first) with its own mapping,
returned to the system on free. Whenever such a block is freed, glibc raises the threshold to
its size (up to 32 MiB) and the trim threshold to twice that. A worker frees large blocks all
the time (decoded frames, contact sheets, big activity payloads), so soon most blocks come
from the heap, and the holes they leave are kept. Measured on this project's 2-core box with
jobs of 800 tiny variations one after another: left to glibc, a worker's resident memory grew
by 6-10 MiB per 1,000 variations, mostly free memory glibc held; with the thresholds fixed,
by 2.4-2.8 MiB (`benchmarks/memory.py`, `benchmarks/README.md`).

`fix_malloc_thresholds` pins both thresholds, which stops the raising. 2 MiB keeps a 720p
frame (1.4 MB) on the heap, so decoding pays no page faults for fresh mappings (a 128 KiB
threshold made checking and measuring a 720p output about 15 % dearer), while sheets, big
payloads and larger frames are mapped and unmapped whole.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

DEFAULT_MMAP_THRESHOLD = 2 * 1024 * 1024
"""The worker's mmap threshold in bytes (`VARIA_MALLOC_MMAP_THRESHOLD`); the trim threshold is
twice it."""

GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
"""glibc's own variables for these thresholds: a user who set one keeps glibc's behaviour."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def glibc() -> bool:
    """Whether this process runs on glibc (where `mallopt` takes these parameters)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


def fix_malloc_thresholds(
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD, environ: Mapping[str, str] = os.environ
) -> bool:
    """Pin glibc's mmap threshold at `mmap_threshold` bytes and its trim threshold at twice
    that; returns whether it did. Nothing happens off glibc, for a threshold of 0, or when the
    environment sets glibc's own `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_`."""
    if mmap_threshold <= 0 or not glibc() or any(name in environ for name in GLIBC_ENV):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped: bool = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    trimmed: bool = mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold) == 1
    return mapped and trimmed


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks"),
            *("uordblks", "fordblks", "keepcost"),
        )
    ]


def malloc_counts() -> dict[str, int] | None:
    """glibc's own count of this process's heap, in bytes (`mallinfo2`, glibc 2.33 and later):
    `heap` obtained from the system, `in_use` and `free` of it, `mapped` in blocks of their
    own. None off glibc."""
    if not glibc():
        return None
    libc = ctypes.CDLL(None)
    try:
        mallinfo2 = libc.mallinfo2
    except AttributeError:  # glibc before 2.33
        return None
    mallinfo2.restype = _MallInfo2
    counts = mallinfo2()
    return {
        "heap": counts.arena,
        "in_use": counts.uordblks,
        "free": counts.fordblks,
        "mapped": counts.hblkhd,
    }
