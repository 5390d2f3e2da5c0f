"""What a start sends besides the request: a fresh job id and the Web UI's summary/details."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from varia.models import JobRequest


def new_job_id() -> str:
    """A fresh, sortable job id such as `varia-20261129-161425-3f9a2c`."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"varia-{stamp}-{secrets.token_hex(3)}"


def job_summary(request: JobRequest) -> str:
    """The static summary the Web UI shows for a job."""
    return (
        f"{request.variations} variation(s) of {len(request.inputs)} input(s), seed "
        f"{request.seed}, concurrency {request.concurrency} → {request.output_dir}"
    )


def job_details(request: JobRequest) -> str:
    """The static details the Web UI shows for a job: its inputs."""
    return f"inputs: {', '.join(request.inputs)}"
