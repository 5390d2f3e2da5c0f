"""What can go wrong when a client asks Temporal about a job, as varia's own exceptions.

Every RPC failure is classified once (`problem`): the job does not exist, its run just closed,
the server is unreachable, or Temporal refused the request (with the server's message).
"""

from __future__ import annotations

from temporalio.service import RPCError, RPCStatusCode


class ClientProblem(Exception):
    """Base of the client layer's errors; the message is one line for a person."""


class JobNotFound(ClientProblem):
    """No job with this id exists in the namespace."""


class ServerUnreachable(ClientProblem):
    """The Temporal server did not answer; the message names the address."""


class Refused(ClientProblem):
    """Temporal refused the request (permission, bad namespace, …); the message is the server's."""


class JobClosed(ClientProblem):
    """The job's run closed before the request reached it (a race, not an error)."""


class NotPausable(ClientProblem):
    """The job refused a pause or resume (closed, finishing, not paused); the message says
    why."""


CLOSED_MARKERS = ("already completed", "already finished")
"""How the server says a request hit a run that has just closed."""


def problem(
    err: RPCError, job_id: str, *, namespace: str, address: str, action: str
) -> ClientProblem:
    """The varia error an RPC failure of `action` on `job_id` stands for."""
    message = err.message
    lowered = message.lower()
    if err.status == RPCStatusCode.NOT_FOUND and any(m in lowered for m in CLOSED_MARKERS):
        return JobClosed(f"job {job_id!r} closed before the {action} reached it")
    if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in lowered:
        return JobNotFound(f"no job {job_id!r} in namespace {namespace!r}")
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return ServerUnreachable(f"Temporal at {address} did not answer: {message}")
    target = f" of {job_id!r}" if job_id else ""
    return Refused(f"Temporal refused the {action}{target}: {message}")
