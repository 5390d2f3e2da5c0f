"""Temporal's client-configuration convention, through the SDK's `temporalio.envconfig`.

The `temporal` CLI and every SDK program read the same things: a profile (`TEMPORAL_PROFILE`,
default `default`) from a TOML file (`TEMPORAL_CONFIG_FILE`, default
`~/.config/temporalio/temporal.toml`), overridden by the standard `TEMPORAL_*` variables
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS_CLIENT_CERT_PATH`,
`TEMPORAL_TLS_CLIENT_KEY_PATH`, `TEMPORAL_TLS_SERVER_CA_CERT_PATH`, `TEMPORAL_GRPC_META_*`, …).
varia's own older names `TEMPORAL_TLS_CERT`/`KEY`/`CA` still work, with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig

log = logging.getLogger("varia.config")

DEPRECATED_ALIASES: dict[str, str] = {
    "TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_KEY": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CA": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
}
"""varia's former variable → Temporal's standard one."""

_warned: set[str] = set()


class ProfileError(ValueError):
    """The profile or its config file cannot be loaded; the message names the variable."""


def standard_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with each deprecated alias copied to its standard name (warned once)."""
    env = dict(os.environ if environ is None else environ)
    for old, new in DEPRECATED_ALIASES.items():
        if old not in env:
            continue
        if old not in _warned:
            _warned.add(old)
            log.warning("%s is deprecated: set %s instead (Temporal's own name)", old, new)
        env.setdefault(new, env[old])
    return env


def load_profile(env: Mapping[str, str]) -> ClientConfigProfile:
    """The client profile `env` selects, with `env`'s `TEMPORAL_*` overrides applied."""
    try:
        return ClientConfigProfile.load(
            profile=env.get("TEMPORAL_PROFILE") or None,
            config_source=Path(env["TEMPORAL_CONFIG_FILE"])
            if env.get("TEMPORAL_CONFIG_FILE")
            else None,
            override_env_vars=env,
        )
    except Exception as err:  # the SDK raises its bridge's ConfigError
        where = env.get("TEMPORAL_CONFIG_FILE") or "the default config file"
        profile = env.get("TEMPORAL_PROFILE") or "default"
        raise ProfileError(
            f"TEMPORAL_PROFILE={profile!r} (TEMPORAL_CONFIG_FILE={where}): {err}"
        ) from None


def connect_config(env: Mapping[str, str]) -> ClientConnectConfig:
    """`Client.connect` keyword arguments (address, namespace, TLS, API key, gRPC metadata)."""
    try:
        return load_profile(env).to_client_connect_config()
    except OSError as err:  # a TLS file that cannot be read
        raise ProfileError(f"TLS file {err.filename}: {err.strerror}") from None
