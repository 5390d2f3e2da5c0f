"""Which job ids (workflow ids) are safe as the name of one job directory (pure)."""

from __future__ import annotations

import unicodedata

_JOB_ID_MAX = 200

_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)
"""Characters that reorder how a name is shown (a name could read as another)."""


def job_id_problem(job_id: str, *, strict: bool = True) -> str | None:
    """Why `job_id` is unsafe as one directory name, or None if it is safe (pure).

    `strict=False`: the rules before byte lengths, C1/line-separator/bidi characters and
    surrounding white space were checked (the workflow replays older runs with them).
    """
    if not job_id:
        return "the job id is empty"
    if len(job_id) > _JOB_ID_MAX:
        return f"the job id is longer than {_JOB_ID_MAX} characters"
    if strict and (problem := _strict_id_problem(job_id)):
        return problem
    if job_id in {".", ".."}:
        return f"the job id {job_id!r} is a relative directory reference"
    if "/" in job_id or "\\" in job_id:
        return f"the job id {job_id!r} contains a path separator"
    if "\x00" in job_id:
        return "the job id contains a NUL character"
    if job_id.startswith("-"):
        return f"the job id {job_id!r} starts with '-'"
    if any(ord(ch) < 32 for ch in job_id):
        return "the job id contains a control character"
    return None


def _strict_id_problem(job_id: str) -> str | None:
    size = len(job_id.encode("utf-8", "surrogatepass"))
    if size > _JOB_ID_MAX:  # a directory name holds 255 bytes, not characters
        return f"the job id is {size} bytes long in UTF-8; at most {_JOB_ID_MAX}"
    if job_id != job_id.strip():
        return f"the job id {job_id!r} starts or ends with white space"
    for char in job_id:
        if 0x7F <= ord(char) < 0xA0 or unicodedata.category(char) in ("Zl", "Zp"):
            return f"the job id contains a control or line-break character (U+{ord(char):04X})"
        if char in _BIDI_CONTROLS:
            return f"the job id contains a text-direction control character (U+{ord(char):04X})"
    return None
