"""Every knob of varia, read from the environment (one pydantic-settings model).

A bad value fails at start with a message that names the variable. The README's table and
`varia worker --help` are generated from the model (`varia.settings_doc`).

Over 300 lines on purpose: the model is one declarative list, a setting a few lines (type,
default, variable, meaning, bounds); split, a reader would look in two places for one knob.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from temporalio.envconfig import ClientConnectConfig

from varia.address import address_problem
from varia.memory import DEFAULT_MMAP_THRESHOLD
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


def setting(default: Any, env: str, meaning: str, **bounds: Any) -> Any:
    """A setting read from `env`: its default, its meaning (README table, `--help`), bounds."""
    return Field(default, alias=env, description=meaning, **bounds)


class Settings(BaseSettings):
    """Configuration shared by the worker and the CLI; each field has one env var."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    temporal_address: str = setting(
        "localhost:7233",
        "TEMPORAL_ADDRESS",
        "Temporal frontend host:port; unset: the profile's, else localhost:7233.",
    )
    temporal_namespace: str = setting(
        "default", "TEMPORAL_NAMESPACE", "Temporal namespace; unset: the profile's, else default."
    )
    task_queue: str = setting(
        DEFAULT_TASK_QUEUE, "VARIA_TASK_QUEUE", "Task queue of jobs and renders."
    )
    temporal_profile: str | None = setting(
        None,
        "TEMPORAL_PROFILE",
        "Profile of Temporal's client config file (as the temporal CLI reads it).",
    )
    temporal_config_file: Path | None = setting(
        None,
        "TEMPORAL_CONFIG_FILE",
        "Temporal's TOML client config; unset: ~/.config/temporalio/temporal.toml.",
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
    api_key: str | None = setting(
        None, "TEMPORAL_API_KEY", "API key (Temporal Cloud); implies TLS."
    )
    ffmpeg: str | None = setting(None, "VARIA_FFMPEG", "FFmpeg binary; default: imageio-ffmpeg's.")
    ffmpeg_threads: int | None = setting(
        None,
        "VARIA_FFMPEG_THREADS",
        "FFmpeg -threads of a render whose job set none; unset: FFmpeg chooses.",
        ge=1,
    )
    ffmpeg_nice: int = setting(0, "VARIA_FFMPEG_NICE", "Niceness added to FFmpeg.", ge=0, le=19)
    max_concurrent_renders: int = setting(
        2,
        "VARIA_MAX_CONCURRENT_RENDERS",
        "FFmpeg one worker runs at once (renders waiting for their job slot or in their tail "
        "do not count); other activities have own slots.",
        ge=1,
    )
    stop_stage_timeout_s: float = setting(
        2.0, "VARIA_STOP_STAGE_TIMEOUT", "Seconds each stop stage waits.", gt=0
    )
    cancel_stage_timeout_s: float = setting(
        0.05,
        "VARIA_CANCEL_STAGE_TIMEOUT",
        "Seconds the `q` and SIGTERM stages wait when a cancel or pause stops a render "
        "(its partial output is deleted: no flush worth waiting for).",
        gt=0,
    )
    stall_timeout_s: float = setting(
        60.0, "VARIA_STALL_TIMEOUT", "No FFmpeg progress this long = hung.", gt=0
    )
    graceful_shutdown_s: float = setting(
        10.0, "VARIA_GRACEFUL_SHUTDOWN", "Worker drain time on SIGTERM.", ge=0
    )
    malloc_mmap_threshold: int = setting(
        DEFAULT_MMAP_THRESHOLD,
        "VARIA_MALLOC_MMAP_THRESHOLD",
        "Bytes from which glibc maps a block of its own (trim threshold: twice), fixed: "
        "glibc would raise both as big blocks are freed, and a worker's memory then grows "
        "job by job. 0 leaves glibc's own.",
        ge=0,
        le=32 * 1024 * 1024,
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
    max_input_duration_s: float = setting(
        DEFAULT_MAX_INPUT_DURATION_S,
        "VARIA_MAX_INPUT_DURATION",
        "Longest input accepted, in seconds (longer: refused at probe).",
        gt=0,
    )
    max_input_pixels: int = setting(
        DEFAULT_MAX_INPUT_PIXELS,
        "VARIA_MAX_INPUT_PIXELS",
        "Largest input frame accepted, width x height in pixels (8K DCI).",
        ge=1,
    )
    max_input_streams: int = setting(
        DEFAULT_MAX_INPUT_STREAMS,
        "VARIA_MAX_INPUT_STREAMS",
        "Most streams (video, audio, subtitle, data) an input may have.",
        ge=1,
    )
    max_input_bytes: int = setting(
        DEFAULT_MAX_INPUT_BYTES,
        "VARIA_MAX_INPUT_BYTES",
        "Largest input file accepted, in bytes (64 GiB).",
        ge=1,
    )
    heartbeat_throttle_s: float = setting(
        5.0,
        "VARIA_HEARTBEAT_THROTTLE",
        "Most seconds between render heartbeats (bounds a cancel that is not pushed).",
        gt=0,
        le=5,
    )
    push_cancel: bool = setting(
        True,
        "VARIA_PUSH_CANCEL",
        "Poll a queue of this worker's own, so a cancel reaches its renders at once.",
    )
    worker_identity: str | None = setting(
        None,
        "VARIA_WORKER_IDENTITY",
        "Worker identity shown in history and Web UI; default pid@host.",
        min_length=1,
    )
    metrics_port: int | None = setting(
        None,
        "VARIA_METRICS_PORT",
        "Port of the Prometheus /metrics endpoint; unset: off.",
        ge=1,
        le=65535,
    )
    metrics_host: str = setting(
        "0.0.0.0", "VARIA_METRICS_HOST", "Address the metrics endpoint binds to.", min_length=1
    )
    log_format: Literal["text", "json"] = setting(
        "text", "VARIA_LOG_FORMAT", "Worker log lines: text or json."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", "VARIA_LOG_LEVEL", "Worker log level."
    )
    ui_url: str | None = setting(
        None,
        "VARIA_UI_URL",
        "Temporal Web UI base URL; default: the gRPC host, port + 1000 (dev server).",
    )
    progress_min_render_s: float = setting(
        30.0,
        "VARIA_PROGRESS_MIN_RENDER",
        "Renders projected to last this many seconds report 25/50/75 % to the job.",
        ge=0,
    )
    janitor_interval_s: float = setting(
        300.0,
        "VARIA_JANITOR_INTERVAL",
        "Seconds between janitor sweeps (the schedule `varia server` and each worker create).",
        ge=10,
    )
    janitor_grace_s: float = setting(
        60.0,
        "VARIA_JANITOR_GRACE",
        "A terminated job is swept once it has been closed this many seconds.",
        ge=0,
    )
    janitor_lookback_h: float = setting(
        168.0,
        "VARIA_JANITOR_LOOKBACK_HOURS",
        "The janitor looks at jobs closed within this many hours.",
        gt=0,
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
        """Address and namespace not set here come from Temporal's client profile; the
        address must be a `host:port` (the SDK would fail on anything else with a traceback)."""
        from varia.envprofile import load_profile  # the SDK: only once settings are read

        profile = load_profile(self.profile_env())
        where = "TEMPORAL_ADDRESS={!r}"
        if "temporal_address" not in self.model_fields_set and profile.address:
            self.temporal_address = profile.address
            name = self.temporal_profile or "default"
            where = f"the address {{!r}} of profile {name!r} (TEMPORAL_PROFILE)"
        if "temporal_namespace" not in self.model_fields_set and profile.namespace:
            self.temporal_namespace = profile.namespace
        problem = address_problem(self.temporal_address)
        if problem is not None:
            raise ValueError(f"{where.format(self.temporal_address)}: {problem}")
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
