"""`python -m varia.health`: exit 0 when this host's worker polls its task queues.

A worker polls two: the job queue (`VARIA_TASK_QUEUE`) and its render queue (`<queue>-render`).

The container HEALTHCHECK runs it. The worker is found by `VARIA_WORKER_IDENTITY` when set,
else by the SDK's default identity `<pid>@<hostname>` on this host.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from varia.client.connection import connect
from varia.client.pollers import poller_identities
from varia.config import Settings, SettingsError, load_settings, render_task_queue


def is_mine(identity: str, settings: Settings) -> bool:
    """Whether a poller identity is this host's worker."""
    if settings.worker_identity:
        return identity == settings.worker_identity
    return identity.endswith(f"@{socket.gethostname()}")


async def check(settings: Settings) -> bool:
    """True when this host's worker polls the configured task queue and its render queue."""
    client = await connect(settings)
    for queue in (settings.task_queue, render_task_queue(settings.task_queue)):
        identities = await poller_identities(client, queue)
        if not any(is_mine(identity, settings) for identity in identities):
            return False
    return True


def main() -> int:
    """Exit code for the HEALTHCHECK: 0 healthy, 1 not polling, 2 bad settings or no server."""
    try:
        healthy = asyncio.run(check(load_settings()))
    except SettingsError as err:
        print(f"varia health: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        print(f"varia health: cannot ask Temporal: {err}", file=sys.stderr)
        return 2
    if not healthy:
        print(
            "varia health: no worker of this host polls the task queue and its render queue",
            file=sys.stderr,
        )
    return 0 if healthy else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: it can race the SDK core's threads and abort (SIGABRT).
    os._exit(code)
