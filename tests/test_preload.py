"""A worker imports what measuring needs as it is built, not in its first renders' threads
(where that Python work held the GIL while the first cancel was handled)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from temporalio.client import Client

from varia import quality
from varia.config import Settings
from varia.worker import build_worker

MEASURING_MODULES = ["numpy", "scipy.fftpack", "PIL.Image", "PIL.ImageFont"]

PROBE = """
import json, sys
modules = {modules!r}
from varia import quality, sheet
before = [m for m in modules if m in sys.modules]
quality.preload()
after = [m for m in modules if m in sys.modules]
font = sheet.label_font.cache_info().currsize
print(json.dumps({{"before": before, "after": after, "font": font}}))
"""


def test_preload_imports_measuring_and_loads_the_font_in_a_fresh_process() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=MEASURING_MODULES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(run.stdout)
    assert seen["before"] == []  # importing varia's measuring modules imports none of them
    assert seen["after"] == MEASURING_MODULES
    assert seen["font"] == 1


async def test_building_a_worker_preloads(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[None] = []
    monkeypatch.setattr(quality, "preload", lambda: calls.append(None))
    build_worker(client, settings)
    assert calls == [None]
