"""What can go wrong when a client asks Temporal about a job, as varia's own exceptions.

Every RPC failure is classified once (`problem`): the namespace or the job does not exist, its
run just closed, the server is unreachable, or Temporal refused the request (with the server's
message).
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


class NamespaceNotFound(ClientProblem):
    """The configured namespace does not exist on the server (a bad setting)."""


class NotPausable(ClientProblem):
    """The job refused a pause or resume (closed, finishing, not paused); the message says
    why."""


CLOSED_MARKERS = ("already completed", "already finished")
"""How the server says a request hit a run that has just closed."""


def namespace_missing(err: RPCError) -> bool:
    """Whether the server refused a request because the namespace does not exist."""
    if err.status != RPCStatusCode.NOT_FOUND:
        return False
    details = err.grpc_status.details
    return any(d.type_url.endswith(".NamespaceNotFoundFailure") for d in details)


def missing_namespace(namespace: str, address: str) -> NamespaceNotFound:
    """The error for a namespace the server at `address` does not have, with the way out."""
    return NamespaceNotFound(
        f"namespace {namespace!r} (TEMPORAL_NAMESPACE) does not exist on the Temporal server at "
        f"{address}; on a dev server, create it with: temporal operator namespace create "
        f"--namespace {namespace} --address {address}"
    )


def problem(
    err: RPCError, job_id: str, *, namespace: str, address: str, action: str
) -> ClientProblem:
    """The varia error an RPC failure of `action` on `job_id` stands for."""
    if namespace_missing(err):
        return missing_namespace(namespace, address)
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
