"""The deployment files, parsed (no container engine here): a broken edit fails `make test`."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from varia.cli import app
from varia.config import Settings, load_settings
from varia.server import SEARCH_ATTRIBUTE_FLAGS

ROOT = Path(__file__).resolve().parent.parent
WORKER_COMMAND = ["varia", "worker"]
TEMPORAL_SERVICES = {"postgresql", "temporal", "temporal-admin", "temporal-ui"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def worker(services: dict[str, Any]) -> dict[str, Any]:
    return services["worker"]  # type: ignore[no-any-return]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments gone."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            found.append((instruction.upper(), args.strip()))
    return found


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON) form: {args}"
    return [str(part) for part in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def test_all_services_present(services: dict[str, Any]) -> None:
    assert set(services) >= TEMPORAL_SERVICES | {"worker"}


def test_images_pinned_by_tag(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and "$" not in image, f"{name}: image {image!r} is not pinned"
    assert services["temporal"]["image"].startswith(
        ("temporalio/auto-setup:", "temporalio/server:")
    )
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["temporal-admin"]["image"].startswith("temporalio/admin-tools:")
    assert services["postgresql"]["image"].startswith("postgres:")


def test_worker_image_is_built_from_the_dockerfile(worker: dict[str, Any]) -> None:
    build = worker["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / name).resolve() == ROOT / "Dockerfile"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert worker["image"].endswith(f":{version}"), "tag the worker image with the version"


def test_health_checks(services: dict[str, Any]) -> None:
    for name in ("postgresql", "temporal", "temporal-ui"):
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
    assert "healthcheck" not in services["worker"], "the worker's check lives in the Dockerfile"


@pytest.mark.parametrize(
    ("service", "dependency", "condition"),
    [
        ("temporal", "postgresql", "service_healthy"),
        ("temporal-admin", "temporal", "service_healthy"),
        ("temporal-ui", "temporal", "service_healthy"),
        ("worker", "temporal", "service_healthy"),
        ("worker", "temporal-admin", "service_completed_successfully"),
    ],
)
def test_depends_on_conditions(
    services: dict[str, Any], service: str, dependency: str, condition: str
) -> None:
    depends = services[service].get("depends_on")
    assert isinstance(depends, dict), f"{service}: depends_on needs conditions (a mapping)"
    assert depends.get(dependency, {}).get("condition") == condition


def test_admin_step_registers_the_search_attributes(services: dict[str, Any]) -> None:
    admin = services["temporal-admin"]
    script = " ".join(admin["command"]) if isinstance(admin["command"], list) else admin["command"]
    expected = [flag for flag in SEARCH_ATTRIBUTE_FLAGS if flag != "--search-attribute"]
    for pair in expected:  # e.g. VariaState=Keyword, as the dev server registers it
        assert pair.replace("=", ":") in script, f"admin step does not register {pair}"
    assert "search-attribute create" in script
    assert admin.get("restart") in (None, "no"), "a one-shot step must not restart"


def test_worker_env_is_known_to_the_settings_model(worker: dict[str, Any]) -> None:
    known = {field.alias for field in Settings.model_fields.values()}
    env = environment(worker)
    unknown = set(env) - known
    assert not unknown, f"worker env vars the settings model does not know: {sorted(unknown)}"
    settings = load_settings(**env)  # every value is valid, too
    host = settings.temporal_address.rsplit(":", 1)[0]
    assert host == "temporal", "the worker must talk to the compose server"


def test_worker_command_is_the_cli_worker(worker: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[WORKER_COMMAND[0]] == "varia.cli:main"
    group = typer.main.get_command(app)
    assert WORKER_COMMAND[1] in group.commands  # type: ignore[attr-defined]
    assert exec_form(instructions("CMD")[-1]) == WORKER_COMMAND
    command = worker.get("command", WORKER_COMMAND)
    command = shlex.split(command) if isinstance(command, str) else command
    assert command == WORKER_COMMAND
    assert "entrypoint" not in worker and not instructions("ENTRYPOINT")


def test_two_replicas_share_one_media_volume(
    compose: dict[str, Any], worker: dict[str, Any]
) -> None:
    assert int(worker["deploy"]["replicas"]) >= 2
    mounts = [
        m.split(":") if isinstance(m, str) else [m["source"], m["target"]]
        for m in worker["volumes"]
    ]
    named = [
        (source, target)
        for source, target, *_ in mounts
        if source in (compose.get("volumes") or {})
    ]
    assert named, "mount a named volume (one volume shared by every replica)"
    env = load_settings(**environment(worker))
    for _, target in named:
        assert Path(target).is_absolute()
        for roots in (env.allowed_input_roots, env.allowed_output_roots):
            assert any(Path(target) == root or root in Path(target).parents for root in roots), (
                f"media mount {target} is outside the allowed roots {roots}"
            )


def test_worker_signals_reach_it(worker: dict[str, Any]) -> None:
    assert worker.get("init") is True, "an init process as PID 1 (compose `init: true`)"
    settings = load_settings(**environment(worker))
    grace = worker["stop_grace_period"]
    seconds = float(grace.rstrip("s")) if isinstance(grace, str) else float(grace)
    needed = settings.graceful_shutdown_s + 3 * settings.stop_stage_timeout_s
    assert seconds > needed, "stop_grace_period shorter than the worker's graceful shutdown"


def test_metrics_port_is_exposed(worker: dict[str, Any]) -> None:
    port = load_settings(**environment(worker)).metrics_port
    assert port is not None
    assert str(port) in [str(item) for item in worker.get("expose", [])]


def test_dockerfile_base_user_healthcheck_and_ffmpeg() -> None:
    base = instructions("FROM")
    assert len(base) == 1
    image = base[0].split()[0]
    assert image.startswith("python:") and "slim" in image
    assert image.split(":", 1)[1] not in ("slim", "latest") and re.search(r"\d+\.\d+", image)
    user = instructions("USER")[-1].split(":")[0]
    assert user not in ("root", "0"), "the image must run as a non-root user"
    (check,) = instructions("HEALTHCHECK")
    command = exec_form(check.split("CMD", 1)[1].strip())
    assert command[:2] == ["python", "-m"] and importlib.util.find_spec(command[2]) is not None
    runs = " ".join(instructions("RUN"))
    assert "ffmpeg" not in re.sub(r"imageio[_-]ffmpeg", "", runs.replace("get_ffmpeg_exe", "")), (
        "FFmpeg comes from imageio-ffmpeg, not apt"
    )
    assert "pip install ." in runs


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


async def test_admin_step_creates_the_janitor_schedule_once(
    services: dict[str, Any], client: Any, settings: Settings
) -> None:
    """The admin script itself, run with the installed `temporal` CLI against the dev server."""
    import asyncio
    import os

    from varia.janitor_workflow import schedule_id
    from varia.names import JANITOR_WORKFLOW
    from varia.server import temporal_binary

    admin = services["temporal-admin"]
    script = admin["command"][0].replace("$$", "$")
    env = {
        **os.environ,
        **environment(admin),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "VARIA_TASK_QUEUE": settings.task_queue,
        "PATH": f"{Path(temporal_binary()).parent}:{os.environ['PATH']}",
    }
    for _ in range(2):  # a second run (compose up again) finds it and changes nothing
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            script,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    assert f"{schedule_id(settings.task_queue)} already scheduled" in out.decode()
    handle = client.get_schedule_handle(schedule_id(settings.task_queue))
    try:
        description = await handle.describe()
        assert getattr(description.schedule.action, "workflow", None) == JANITOR_WORKFLOW
        every = description.schedule.spec.intervals[0].every
        assert every.total_seconds() == float(environment(admin)["VARIA_JANITOR_INTERVAL"])
    finally:
        await handle.delete()


def test_compose_server_serves_by_priority_and_fairness(services: dict[str, Any]) -> None:
    """The compose server's dynamic config turns on what `varia server` turns on."""
    from varia.server import FAIRNESS_FLAGS

    temporal = services["temporal"]
    path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    [mount] = [v for v in temporal["volumes"] if v.split(":")[1] == path]
    config = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    wanted = [flag for flag in FAIRNESS_FLAGS if flag != "--dynamic-config-value"]
    for pair in wanted:
        key, value = pair.split("=")
        assert config[key] == [{"value": value == "true"}], f"compose lacks {pair}"
