"""Sending a job one of its updates (`drain`, `pause`, `resume`): an update needs a worker.

Temporal delivers an update to a worker, which accepts (or rejects) it in a workflow task; until
one does, the server only holds it in memory ("admitted": a server restart forgets it), and the
call waits. So a drain or pause of a job no worker polls waits for a worker: `send_update` tells
its caller the moment a worker took it, and keeps a Ctrl-C a plain cancellation (the SDK turns a
cancelled update call into `WorkflowUpdateRPCTimeoutOrCancelledError`: a traceback).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio.client import (
    Client,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError

from varia.models import Progress

Taken = Callable[[], None]
"""Told once a worker took the request (accepted or rejected it): it was delivered."""


def waiting_for_a_worker(name: str) -> str:
    """What to say while an update waits for a worker."""
    return (
        f"waiting for one to take the {name} (an update is delivered only when a worker "
        "accepts it; Ctrl-C stops waiting)"
    )


async def send_update(client: Client, job_id: str, name: str, taken: Taken | None) -> Progress:
    """Send update `name` to the job; its answer once done. `taken` hears when a worker took it.

    Raises `WorkflowUpdateFailedError` (the job rejected it), `RPCError`, and
    `asyncio.CancelledError` when the call is cancelled (Ctrl-C).
    """
    handle = client.get_workflow_handle(job_id)
    try:
        update = await handle.start_update(
            name, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=Progress
        )
        if taken is not None:
            taken()
        answer: Progress = await update.result()
        return answer
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        if isinstance(err.__cause__, RPCError):  # a deadline: the server did not answer
            raise err.__cause__ from None
        raise asyncio.CancelledError from None
