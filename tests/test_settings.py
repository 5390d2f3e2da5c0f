"""Settings: one model, documented in the README and in `varia worker --help`; bad values fail
at start, naming the variable (checked through the real `varia worker` process)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from varia.client.status import ui_base_url
from varia.config import Settings, SettingsError, load_settings
from varia.settings_doc import settings_markdown

ROOT = Path(__file__).resolve().parent.parent
VARIA = str(Path(sys.executable).parent / "varia")
TABLE = re.compile(r"<!-- settings-table -->\n(.*?)\n<!-- /settings-table -->", re.S)


def run_varia(
    args: list[str], env: dict[str, str], timeout_s: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """`varia ARGS` with `env` added; it must exit by itself (a bad setting stops it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VARIA_", "TEMPORAL_"))}
    # an address nobody answers: a command that got past its settings would fail differently
    clean |= {"TEMPORAL_ADDRESS": "127.0.0.1:9", "COLUMNS": "200"} | env
    return subprocess.run(
        [VARIA, *args], env=clean, capture_output=True, text=True, timeout=timeout_s
    )


def run_worker(env: dict[str, str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`varia worker` with `env` added (`run_varia`)."""
    return run_varia(["worker"], env, timeout_s)


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


BAD_ADDRESSES = ["127.0.0.1:notaport", ":99999", " ", "::::", "http://127.0.0.1:7233"]
"""Addresses the SDK turned into a traceback (or, with a scheme, only a warning)."""


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_bad_address_is_a_settings_error_naming_the_variable(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    with pytest.raises(SettingsError, match=re.escape(f"TEMPORAL_ADDRESS={address!r}: ")):
        load_settings()


@pytest.mark.parametrize(
    "address", ["localhost:7233", "[::1]:7233", "my-ns.a1b2c.tmprl.cloud:7233"]
)
def test_host_port_addresses_are_accepted(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    assert load_settings().temporal_address == address


def test_a_url_in_the_profile_names_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.prod]\naddress = "http://prod.example:7233"\n')
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    with pytest.raises(SettingsError, match=r"of profile 'prod'.*drop 'http://'"):
        load_settings()


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_bad_address_stops_worker_and_status_with_exit_2(address: str) -> None:
    worker = run_worker({"TEMPORAL_ADDRESS": address})
    status = run_varia(["status", "x", "--json"], {"TEMPORAL_ADDRESS": address})
    for result in (worker, status):
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        [line] = [line for line in result.stderr.splitlines() if line.strip()]
        assert line.startswith(f"varia: bad setting: TEMPORAL_ADDRESS={address!r}: "), line
    error = json.loads(status.stdout)
    assert error["exit_code"] == 2 and f"TEMPORAL_ADDRESS={address!r}" in error["error"]


def test_the_web_ui_link_keeps_an_ipv6_host_in_brackets() -> None:
    assert ui_base_url("[::1]:7233", None) == "http://[::1]:8233"
    assert ui_base_url("localhost:7300", None) == "http://localhost:8300"
