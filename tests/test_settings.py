"""Settings: one model, documented in the README and in `varia worker --help`; bad values fail
at start, naming the variable (checked through the real `varia worker` process)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from varia.config import Settings, SettingsError, load_settings
from varia.settings_doc import settings_markdown

ROOT = Path(__file__).resolve().parent.parent
VARIA = str(Path(sys.executable).parent / "varia")
TABLE = re.compile(r"<!-- settings-table -->\n(.*?)\n<!-- /settings-table -->", re.S)


def run_worker(env: dict[str, str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`varia worker` with `env` added; it must exit by itself (a bad setting stops it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VARIA_", "TEMPORAL_"))}
    # an address nobody answers: a worker that got past its settings would fail differently
    clean |= {"TEMPORAL_ADDRESS": "127.0.0.1:9", "COLUMNS": "200"} | env
    return subprocess.run(
        [VARIA, "worker"], env=clean, capture_output=True, text=True, timeout=timeout_s
    )


def test_every_setting_has_an_env_var_and_a_meaning() -> None:
    for name, field in Settings.model_fields.items():
        assert field.alias and field.alias.isupper(), f"{name} has no env var"
        assert field.description, f"{field.alias} has no description"


def test_readme_table_matches_the_model() -> None:
    found = TABLE.search((ROOT / "README.md").read_text())
    assert found, "README lacks the <!-- settings-table --> block"
    expected = settings_markdown()
    assert found.group(1).strip() == expected, (
        "README settings table and varia/config.py drifted apart; paste this table between "
        f"the settings-table markers:\n\n{expected}\n"
    )


def test_worker_help_lists_every_setting() -> None:
    result = subprocess.run(
        [VARIA, "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    for name, field in Settings.model_fields.items():
        assert field.alias in result.stdout, f"{field.alias} ({name}) missing from --help"


def test_load_settings_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARIA_STALL_TIMEOUT", "-1")
    with pytest.raises(SettingsError, match="VARIA_STALL_TIMEOUT='-1'"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VARIA_MAX_CONCURRENT_RENDERS", "zero"),
        ("VARIA_LOG_FORMAT", "xml"),
        ("VARIA_METRICS_PORT", "70000"),
    ],
)
def test_bad_value_stops_the_worker_naming_the_variable(variable: str, value: str) -> None:
    result = run_worker({variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr and value in result.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_metrics_port_in_use_stops_the_worker_naming_the_variable(
    env: WorkflowEnvironment, busy_port: int
) -> None:
    settings = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "VARIA_METRICS_PORT": str(busy_port),
        "VARIA_METRICS_HOST": "127.0.0.1",
    }
    result = await asyncio.to_thread(run_worker, settings)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"VARIA_METRICS_PORT={busy_port}" in result.stderr
