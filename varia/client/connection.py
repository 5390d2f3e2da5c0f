"""Connecting to Temporal with varia's settings, Temporal's client profile and varia's converter."""

from __future__ import annotations

import re

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
        raise ServerUnreachable(
            f"cannot reach Temporal at {settings.temporal_address}: {connect_reason(str(err))}"
        ) from None


_OS_WORDS = re.compile(r'(?:message|error): "([^"]+)"')
"""Where the SDK's connect error quotes the system's reason (`Os { …, message: "…" }`,
`Custom { …, error: "…" }`)."""


def connect_reason(error: str) -> str:
    """The whole of the system's reason in the SDK's connect error (`connection refused`,
    `failed to lookup address information: Name or service not known`), else the error."""
    found = _OS_WORDS.findall(error)
    reason = found[-1] if found else error.strip()
    return reason[:1].lower() + reason[1:]


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
