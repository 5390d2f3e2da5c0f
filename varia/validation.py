"""Checking a job request before anything runs (pure: the workflow and the CLI both call it)."""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import ValidationError

from varia.job_id import job_id_problem
from varia.models import (
    MAX_CONCURRENCY,
    MAX_FAIRNESS_KEY_BYTES,
    MAX_INPUTS,
    MAX_THREADS,
    MAX_TOTAL_VARIATIONS,
    MAX_VARIATIONS,
    PRIORITY_RANGE,
    JobRequest,
    StrengthBounds,
)

MAX_ATTEMPTS = 20
"""The most recipes one variation may try to meet its strength bounds."""
DEFAULT_ATTEMPTS = 5


class RequestError(ValueError):
    """The request cannot run; the message names the field and the problem."""


def _describe(err: ValidationError) -> str:
    problems = []
    for error in err.errors():
        where = ".".join(str(part) for part in error["loc"]) or "request"
        given = f" (got {error['input']!r})" if error["type"] != "missing" else ""
        problems.append(f"{where}: {error['msg']}{given}")
    return "; ".join(problems)


REQUEST_FIELDS = tuple(JobRequest.model_fields)
"""The request's known fields. A new optional field is named more than two edits away from
each of these, so that an older worker never takes it for a misspelling."""


def misspelt_fields(raw: dict[str, Any]) -> str:
    """The unknown fields of a request that look like misspelt known ones, as a sentence
    (`concurency` for `concurrency`, `Seed`, `output-dir`); "" if none.

    A field counts as misspelt when, ignoring case, `_` and `-`, it is one edit (an insertion,
    deletion, substitution or swap of two neighbours) from a known field, or two from a known
    field of 8 letters or more. Other unknown fields are ignored (`JobRequest`).
    """
    problems = []
    for key in ignored_fields(raw):
        bare = _bare(key)
        near = [
            field
            for field, known in _BARE_FIELDS.items()
            if edit_distance(bare, known) <= (2 if len(known) >= 8 else 1)
        ]
        if near:
            guess = " or ".join(repr(field) for field in near)
            problems.append(f"unknown field {key!r} (did you mean {guess}?)")
    return "; ".join(problems)


def ignored_fields(raw: dict[str, Any]) -> list[str]:
    """The fields of a request this version does not know (ignored: `JobRequest`)."""
    return [str(key) for key in raw if key not in REQUEST_FIELDS]


def _bare(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_BARE_FIELDS = {field: _bare(field) for field in REQUEST_FIELDS}


def edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbouring letters that turn `a`
    into `b` (optimal string alignment distance)."""
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(
                row[j] + 1,
                current[j - 1] + 1,
                row[j - 1] + (char_a != char_b),
            )
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], before[j - 2] + 1)
        before, row = row, current
    return row[-1]


def parse_request(raw: JobRequest | dict[str, Any] | Any, *, strict: bool = True) -> JobRequest:
    """Turn the workflow input (a model or its JSON object) into a checked `JobRequest`.

    `strict=False` reads it as jobs started before strict types were (lax types, any unknown
    field ignored): their histories must replay as they ran.
    """
    if isinstance(raw, JobRequest):
        request = raw
    elif isinstance(raw, dict):
        if strict and (misspelt := misspelt_fields(raw)):
            raise RequestError(f"invalid job request: {misspelt}")
        try:
            request = JobRequest.model_validate(raw, strict=strict)
        except ValidationError as err:
            raise RequestError(f"invalid job request: {_describe(err)}") from None
    else:
        raise RequestError(f"invalid job request: expected a JSON object, got {type(raw).__name__}")
    check_request(request)
    return request


def check_threads(threads: int | None) -> None:
    """Raise `RequestError` if a job asks for more than `MAX_THREADS` FFmpeg threads."""
    if threads is not None and threads > MAX_THREADS:
        raise RequestError(
            f"invalid job request: threads is {threads}; it must be from 1 to {MAX_THREADS}"
        )


def check_total(inputs: int, variations: int) -> None:
    """Raise `RequestError` if a job would plan more than `MAX_TOTAL_VARIATIONS` outputs."""
    if inputs * variations > MAX_TOTAL_VARIATIONS:
        raise RequestError(
            f"invalid job request: {inputs} inputs of {variations} variations each make "
            f"{inputs * variations:,} outputs; at most {MAX_TOTAL_VARIATIONS:,} per job "
            "(split it into several jobs)"
        )


def check_request(request: JobRequest) -> None:
    """Raise `RequestError` naming the first problem of a request, if it has one."""
    if not request.inputs:
        raise RequestError("invalid job request: inputs is empty; give at least one video")
    if len(request.inputs) > MAX_INPUTS:
        raise RequestError(
            f"invalid job request: {len(request.inputs)} inputs; at most {MAX_INPUTS} per job"
        )
    for path in request.inputs:
        if not path or "\x00" in path:
            raise RequestError(f"invalid job request: input {path!r} is not a valid path")
        if not posixpath.isabs(path):
            raise RequestError(f"invalid job request: input {path!r} is not an absolute path")
    if not 1 <= request.variations <= MAX_VARIATIONS:
        raise RequestError(
            f"invalid job request: variations is {request.variations}; "
            f"it must be from 1 to {MAX_VARIATIONS}"
        )
    if not 1 <= request.concurrency <= MAX_CONCURRENCY:
        raise RequestError(
            f"invalid job request: concurrency is {request.concurrency}; "
            f"it must be from 1 to {MAX_CONCURRENCY}"
        )
    if not request.output_dir or "\x00" in request.output_dir:
        raise RequestError("invalid job request: output_dir is empty or not a valid path")
    if not posixpath.isabs(request.output_dir):
        raise RequestError(
            f"invalid job request: output_dir {request.output_dir!r} is not an absolute path"
        )
    if request.threads is not None and request.threads < 1:
        raise RequestError(f"invalid job request: threads is {request.threads}; it must be >= 1")
    if request.chunk_size is not None and request.chunk_size < 1:
        raise RequestError(
            f"invalid job request: chunk_size is {request.chunk_size}; it must be >= 1"
        )
    low, high = PRIORITY_RANGE
    if request.priority is not None and not low <= request.priority <= high:
        raise RequestError(
            f"invalid job request: priority is {request.priority}; it must be from {low} "
            f"(first) to {high} (last)"
        )
    key = request.fairness_key
    if key is not None and not 0 < len(key.encode()) <= MAX_FAIRNESS_KEY_BYTES:
        raise RequestError(
            f"invalid job request: fairness_key {key[:80]!r} must be 1 to "
            f"{MAX_FAIRNESS_KEY_BYTES} bytes"
        )
    check_bounds(request)


def check_bounds(request: JobRequest) -> None:
    """Raise `RequestError` naming the field if the strength bounds make no sense."""
    for name in ("min_ssim", "max_ssim"):
        value = getattr(request, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise RequestError(
                f"invalid job request: {name} is {value}; it must be from 0 to 1 (SSIM)"
            )
    low, high = request.min_ssim, request.max_ssim
    if low is not None and high is not None and low > high:
        raise RequestError(
            f"invalid job request: min_ssim {low} is above max_ssim {high}; no output could fit"
        )
    attempts = request.max_attempts
    if attempts is not None and not 1 <= attempts <= MAX_ATTEMPTS:
        raise RequestError(
            f"invalid job request: max_attempts is {attempts}; it must be from 1 to {MAX_ATTEMPTS}"
        )
    if attempts is not None and low is None and high is None:
        raise RequestError(
            "invalid job request: max_attempts is set but neither min_ssim nor max_ssim is"
        )


def strength_bounds(request: JobRequest) -> StrengthBounds | None:
    """The request's strength bounds, or None when it sets none (pure)."""
    if request.min_ssim is None and request.max_ssim is None:
        return None
    return StrengthBounds(
        min_ssim=request.min_ssim,
        max_ssim=request.max_ssim,
        max_attempts=request.max_attempts or DEFAULT_ATTEMPTS,
    )


def check_job_id(job_id: str, *, strict: bool = True) -> None:
    """Raise `RequestError` if the workflow id cannot be used as the job directory's name
    (`strict=False`: by the rules older runs were checked by, `job_id_problem`)."""
    problem = job_id_problem(job_id, strict=strict)
    if problem:
        raise RequestError(f"invalid job id: {problem}")
