"""Connecting to Temporal with varia's settings, Temporal's client profile and varia's converter."""

from __future__ import annotations

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from varia.client.errors import ServerUnreachable, missing_namespace, namespace_missing
from varia.config import Settings, SettingsError
from varia.envprofile import ProfileError


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured server and namespace, speaking varia's JSON models.

    Address, namespace, TLS, API key and gRPC metadata follow `temporalio.envconfig` (profile
    file and `TEMPORAL_*` variables); raises `SettingsError` when a TLS file cannot be read.
    """
    try:
        config = settings.connect_config()
    except ProfileError as err:
        raise SettingsError(f"bad setting: {err}") from None
    return await Client.connect(**config, data_converter=pydantic_data_converter, runtime=runtime)


async def open_client(settings: Settings) -> Client:
    """`connect`, turning a connection failure into `ServerUnreachable` (one clear line)."""
    try:
        return await connect(settings)
    except RuntimeError as err:
        reason = str(err).split("Os {")[-1] if "Os {" in str(err) else str(err)
        raise ServerUnreachable(
            f"cannot reach Temporal at {settings.temporal_address}: {_short(reason)}"
        ) from None


def _short(reason: str) -> str:
    for known in ("Connection refused", "timed out", "No route to host", "Name or service"):
        if known.lower() in reason.lower():
            return known.lower()
    return reason.strip()[:200]


async def check_namespace(client: Client, settings: Settings) -> None:
    """Raise `NamespaceNotFound` (one clear line) when the server has no such namespace; any
    other failure is left to the requests that follow."""
    request = DescribeNamespaceRequest(namespace=settings.temporal_namespace)
    try:
        await client.workflow_service.describe_namespace(request)
    except RPCError as err:
        if namespace_missing(err):
            raise missing_namespace(
                settings.temporal_namespace, settings.temporal_address
            ) from None
