"""Connecting to Temporal with varia's settings and its data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from varia.config import Settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    """mTLS from the cert/key/CA settings; plain TLS with an API key; else no TLS."""
    if settings.tls_cert or settings.tls_key or settings.tls_ca:
        return TLSConfig(
            client_cert=settings.tls_cert.read_bytes() if settings.tls_cert else None,
            client_private_key=settings.tls_key.read_bytes() if settings.tls_key else None,
            server_root_ca_cert=settings.tls_ca.read_bytes() if settings.tls_ca else None,
        )
    return bool(settings.api_key)


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured server and namespace, speaking varia's JSON models."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls_config(settings),
        api_key=settings.api_key,
        runtime=runtime,
    )
