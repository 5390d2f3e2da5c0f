"""What a Temporal frontend address must look like: a gRPC `host:port`, never a URL.

The SDK turns `127.0.0.1:notaport`, `:99999` or `::::` into a traceback at connect, and only
warns on `http://host:port` (a scheme "will be an error in future versions"; the `temporal` CLI
refuses it already). varia refuses all of them when it reads its settings, naming the variable.
"""

from __future__ import annotations

import ipaddress
import re

EXAMPLE = "localhost:7233"
"""The address shown in hints (the default)."""

_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def address_problem(address: str) -> str | None:
    """Why `address` is not a `host:port` to dial (None when it is one)."""
    if "://" in address:
        scheme, _, rest = address.partition("://")
        tls = " (TLS is set apart: TEMPORAL_TLS=true or the profile)" if scheme == "https" else ""
        return f"a host:port, not a URL: drop '{scheme}://', e.g. {rest.rstrip('/')!r}{tls}"
    if not address.strip():
        return f"empty (want host:port, e.g. {EXAMPLE})"
    if any(char.isspace() for char in address):
        return "contains white space"
    host, colon, port = address.rpartition(":")
    if not colon:
        return f"no port (want host:port, e.g. {address}:7233)"
    if not port:
        return "no port after the last ':'"
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"port {port!r} is not a number from 1 to 65535"
    return _host_problem(host)


def _host_problem(host: str) -> str | None:
    if not host:
        return f"no host before the port (e.g. {EXAMPLE})"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    if ":" in host:
        return "an IPv6 address goes in brackets, e.g. [::1]:7233"
    if not _HOST_NAME.fullmatch(host):
        return f"host {host!r} is not a host name or IP address"
    return None


def url_host(hostname: str) -> str:
    """A host as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{hostname}]" if ":" in hostname else hostname
