"""Every knob of varia, read from the environment (one pydantic-settings model).

A bad value fails at start with a message that names the variable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from temporalio.envconfig import ClientConnectConfig

from varia.models import (
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_INPUT_DURATION_S,
    DEFAULT_MAX_INPUT_PIXELS,
    DEFAULT_MAX_INPUT_STREAMS,
    InputLimits,
)

DEFAULT_TASK_QUEUE = "varia"
RENDER_QUEUE_SUFFIX = "-render"


def render_task_queue(task_queue: str) -> str:
    """The task queue of a job's renders: `<task queue>-render` (the one place it is named).

    Every worker polls both: the job's queue for workflows and light activities, this one
    for renders, so renders have a cap of their own per worker.
    """
    return task_queue + RENDER_QUEUE_SUFFIX


CONNECTION_FIELDS = (
    *("temporal_address", "temporal_namespace", "temporal_profile", "temporal_config_file"),
    *("tls_cert", "tls_key", "tls_ca", "api_key"),
)
"""Fields `temporalio.envconfig` also reads (under their env var names)."""


class SettingsError(Exception):
    """A setting has a bad value; the message names the environment variable."""


def _split_roots(value: object) -> object:
    if isinstance(value, str):
        return [part for part in value.split(":") if part]
    return value


def _tls_file(name: str, old_name: str, what: str) -> Any:
    """A TLS file setting under Temporal's standard name, still read under varia's old one."""
    return Field(
        None,
        alias=name,
        validation_alias=AliasChoices(name, old_name),
        description=f"{what} (`{old_name}`: deprecated alias).",
    )


class Settings(BaseSettings):
    """Configuration shared by the worker and the CLI; each field has one env var."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    temporal_address: str = Field(
        "localhost:7233",
        alias="TEMPORAL_ADDRESS",
        description="Temporal frontend host:port; unset: the profile's, else localhost:7233.",
    )
    temporal_namespace: str = Field(
        "default",
        alias="TEMPORAL_NAMESPACE",
        description="Temporal namespace; unset: the profile's, else default.",
    )
    task_queue: str = Field(
        DEFAULT_TASK_QUEUE, alias="VARIA_TASK_QUEUE", description="Task queue of jobs and renders."
    )
    temporal_profile: str | None = Field(
        None,
        alias="TEMPORAL_PROFILE",
        description="Profile of Temporal's client config file (as the temporal CLI reads it).",
    )
    temporal_config_file: Path | None = Field(
        None,
        alias="TEMPORAL_CONFIG_FILE",
        description="Temporal's TOML client config; unset: ~/.config/temporalio/temporal.toml.",
    )
    tls_cert: Path | None = _tls_file(
        "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CERT", "Client certificate (PEM) for mTLS"
    )
    tls_key: Path | None = _tls_file(
        "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_KEY", "Client private key (PEM) for mTLS"
    )
    tls_ca: Path | None = _tls_file(
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_CA",
        "CA bundle (PEM) to verify the server",
    )
    api_key: str | None = Field(
        None, alias="TEMPORAL_API_KEY", description="API key (Temporal Cloud); implies TLS."
    )
    ffmpeg: str | None = Field(
        None, alias="VARIA_FFMPEG", description="FFmpeg binary; default: imageio-ffmpeg's."
    )
    ffmpeg_threads: int | None = Field(
        None,
        alias="VARIA_FFMPEG_THREADS",
        ge=1,
        description="FFmpeg -threads of a render whose job set none; unset: FFmpeg chooses.",
    )
    ffmpeg_nice: int = Field(
        0, alias="VARIA_FFMPEG_NICE", ge=0, le=19, description="Niceness added to FFmpeg."
    )
    max_concurrent_renders: int = Field(
        2,
        alias="VARIA_MAX_CONCURRENT_RENDERS",
        ge=1,
        description="Renders (FFmpeg) one worker runs at once; other activities have own slots.",
    )
    stop_stage_timeout_s: float = Field(
        2.0, alias="VARIA_STOP_STAGE_TIMEOUT", gt=0, description="Seconds each stop stage waits."
    )
    stall_timeout_s: float = Field(
        60.0, alias="VARIA_STALL_TIMEOUT", gt=0, description="No FFmpeg progress this long = hung."
    )
    graceful_shutdown_s: float = Field(
        10.0, alias="VARIA_GRACEFUL_SHUTDOWN", ge=0, description="Worker drain time on SIGTERM."
    )
    allowed_input_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        alias="VARIA_ALLOWED_INPUT_ROOTS",
        description="Colon-separated dirs inputs must be under; empty: anywhere.",
    )
    allowed_output_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        alias="VARIA_ALLOWED_OUTPUT_ROOTS",
        description="Colon-separated dirs output_dir must be under; empty: anywhere.",
    )
    max_input_duration_s: float = Field(
        DEFAULT_MAX_INPUT_DURATION_S,
        alias="VARIA_MAX_INPUT_DURATION",
        gt=0,
        description="Longest input accepted, in seconds (longer: refused at probe).",
    )
    max_input_pixels: int = Field(
        DEFAULT_MAX_INPUT_PIXELS,
        alias="VARIA_MAX_INPUT_PIXELS",
        ge=1,
        description="Largest input frame accepted, width x height in pixels (8K DCI).",
    )
    max_input_streams: int = Field(
        DEFAULT_MAX_INPUT_STREAMS,
        alias="VARIA_MAX_INPUT_STREAMS",
        ge=1,
        description="Most streams (video, audio, subtitle, data) an input may have.",
    )
    max_input_bytes: int = Field(
        DEFAULT_MAX_INPUT_BYTES,
        alias="VARIA_MAX_INPUT_BYTES",
        ge=1,
        description="Largest input file accepted, in bytes (64 GiB).",
    )
    heartbeat_throttle_s: float = Field(
        2.0,
        alias="VARIA_HEARTBEAT_THROTTLE",
        gt=0,
        le=5,
        description="Most seconds between render heartbeats (bounds a cancel that is not pushed).",
    )
    push_cancel: bool = Field(
        True,
        alias="VARIA_PUSH_CANCEL",
        description="Poll a queue of this worker's own, so a cancel reaches its renders at once.",
    )
    worker_identity: str | None = Field(
        None,
        alias="VARIA_WORKER_IDENTITY",
        min_length=1,
        description="Worker identity shown in history and Web UI; default pid@host.",
    )
    metrics_port: int | None = Field(
        None,
        alias="VARIA_METRICS_PORT",
        ge=1,
        le=65535,
        description="Port of the Prometheus /metrics endpoint; unset: off.",
    )
    metrics_host: str = Field(
        "0.0.0.0",
        alias="VARIA_METRICS_HOST",
        min_length=1,
        description="Address the metrics endpoint binds to.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", alias="VARIA_LOG_FORMAT", description="Worker log lines: text or json."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", alias="VARIA_LOG_LEVEL", description="Worker log level."
    )
    ui_url: str | None = Field(
        None,
        alias="VARIA_UI_URL",
        description="Temporal Web UI base URL; default: the gRPC host, port + 1000 (dev server).",
    )

    progress_min_render_s: float = Field(
        10.0,
        alias="VARIA_PROGRESS_MIN_RENDER",
        ge=0,
        description="Renders projected to last this many seconds report 25/50/75 % to the job.",
    )
    janitor_interval_s: float = Field(
        300.0,
        alias="VARIA_JANITOR_INTERVAL",
        ge=10,
        description="Seconds between janitor sweeps (the schedule `varia server` creates).",
    )
    janitor_grace_s: float = Field(
        60.0,
        alias="VARIA_JANITOR_GRACE",
        ge=0,
        description="A terminated job is swept once it has been closed this many seconds.",
    )
    janitor_lookback_h: float = Field(
        168.0,
        alias="VARIA_JANITOR_LOOKBACK_HOURS",
        gt=0,
        description="The janitor looks at jobs closed within this many hours.",
    )

    _split_input_roots = field_validator("allowed_input_roots", mode="before")(_split_roots)
    _split_output_roots = field_validator("allowed_output_roots", mode="before")(_split_roots)

    def input_limits(self) -> InputLimits:
        """The limits every input is probed against."""
        return InputLimits(
            max_duration_s=self.max_input_duration_s,
            max_pixels=self.max_input_pixels,
            max_streams=self.max_input_streams,
            max_bytes=self.max_input_bytes,
        )

    @model_validator(mode="after")
    def _apply_profile(self) -> Settings:
        """Address and namespace not set here come from Temporal's client profile."""
        from varia.envprofile import load_profile  # the SDK: only once settings are read

        profile = load_profile(self.profile_env())
        if "temporal_address" not in self.model_fields_set and profile.address:
            self.temporal_address = profile.address
        if "temporal_namespace" not in self.model_fields_set and profile.namespace:
            self.temporal_namespace = profile.namespace
        return self

    def profile_env(self) -> dict[str, str]:
        """The environment `temporalio.envconfig` reads: the process's, with this model's
        connection values (explicit ones win) under Temporal's standard names."""
        from varia.envprofile import standard_env

        env = standard_env()
        for name in CONNECTION_FIELDS:
            value = getattr(self, name)
            if name in self.model_fields_set and value is not None:
                env[str(Settings.model_fields[name].alias)] = str(value)
        return env

    def connect_config(self) -> ClientConnectConfig:
        """`Client.connect` keyword arguments from the profile and the `TEMPORAL_*` settings."""
        from varia.envprofile import connect_config

        config = connect_config(self.profile_env())
        config["target_host"] = self.temporal_address
        config["namespace"] = self.temporal_namespace
        return config

    def ffmpeg_path(self) -> str:
        """The FFmpeg binary to run: `VARIA_FFMPEG`, else the one imageio-ffmpeg ships."""
        if self.ffmpeg:
            found = shutil.which(self.ffmpeg) or self.ffmpeg
            return found
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment; raise `SettingsError` naming a bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = []
        for error in err.errors():
            if not error["loc"]:  # the profile: its message names the variables
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            name = str(error["loc"][0])
            field = Settings.model_fields.get(name)
            env = field.alias if field is not None and field.alias else name
            value = os.environ.get(env, error.get("input"))
            problems.append(f"{env}={value!r}: {error['msg']}")
        raise SettingsError("bad setting: " + "; ".join(problems)) from err


def _shown_default(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if isinstance(default, list):
        return ", ".join(map(str, default)) or "empty"
    return str(default)


def settings_rows() -> list[tuple[str, str, str]]:
    """(env var, default, meaning) of every setting, in the model's order."""
    return [
        (str(field.alias or name), _shown_default(field), field.description or "")
        for name, field in Settings.model_fields.items()
    ]


def settings_markdown() -> str:
    """The README's settings table, generated from the model."""
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | `{default}` | {meaning} |" for env, default, meaning in settings_rows()]
    return "\n".join(lines)


def settings_help() -> str:
    """Every setting as help text: one paragraph each (the `varia worker --help` epilog)."""
    entries = [
        f"{env} (default: {default}): {meaning}" for env, default, meaning in settings_rows()
    ]
    return "Settings (environment variables):\n\n" + "\n\n".join(entries)
