"""A worker pins glibc's malloc thresholds: a freed large block no longer raises them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from varia.config import Settings, SettingsError, load_settings
from varia.memory import DEFAULT_MMAP_THRESHOLD, fix_malloc_thresholds, malloc_counts

MiB = 1 << 20

PROBE = """
import ctypes, sys
from varia.memory import fix_malloc_thresholds, malloc_counts

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
fixed = sys.argv[1] == "fixed" and fix_malloc_thresholds(2 << 20, environ={})
big = libc.malloc(24 << 20)  # mapped, then freed: glibc's dynamic threshold would become 24 MiB
libc.free(big)
before = malloc_counts()["mapped"]
block = libc.malloc(4 << 20)
print(int(fixed), malloc_counts()["mapped"] - before)  # bytes mapped for the 4 MiB block
libc.free(block)
"""


def _mapped_for_4_mib(mode: str) -> tuple[bool, int]:
    """Run `PROBE` in a fresh interpreter (thresholds are per process)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={}
    )
    fixed, mapped = done.stdout.split()
    return fixed == "1", int(mapped)


@pytest.mark.skipif(malloc_counts() is None, reason="glibc 2.33 or later only")
def test_fixed_thresholds_keep_mapping_large_blocks_after_a_larger_one_was_freed() -> None:
    fixed, mapped = _mapped_for_4_mib("fixed")
    assert fixed
    assert mapped >= 4 * MiB  # its own mapping: unmapped whole when freed
    # the control: left to glibc, the freed 24 MiB block raised the threshold past 4 MiB
    fixed, mapped = _mapped_for_4_mib("glibc")
    assert not fixed
    assert mapped == 0


def test_thresholds_are_left_alone_when_asked_or_set_by_the_user() -> None:
    assert not fix_malloc_thresholds(0, environ={})
    assert not fix_malloc_thresholds(environ={"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert not fix_malloc_thresholds(environ={"MALLOC_TRIM_THRESHOLD_": "131072"})


def test_the_setting_defaults_to_2_mib_and_names_itself_when_out_of_range() -> None:
    assert Settings().malloc_mmap_threshold == DEFAULT_MMAP_THRESHOLD == 2 * MiB
    with pytest.raises(SettingsError, match="VARIA_MALLOC_MMAP_THRESHOLD"):
        load_settings(VARIA_MALLOC_MMAP_THRESHOLD=str(64 * MiB))
