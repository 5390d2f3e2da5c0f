"""Request checks name the problem (no server needed)."""

from __future__ import annotations

import pytest

from varia.validation import RequestError, check_job_id, parse_request

GOOD = {"inputs": ["/in/a.mp4"], "variations": 2, "output_dir": "/out"}


def test_good_request_with_defaults() -> None:
    request = parse_request(dict(GOOD))
    assert (request.seed, request.concurrency, request.threads) == (0, 1, None)


def test_unknown_fields_are_ignored() -> None:
    assert parse_request({**GOOD, "future_option": True}).variations == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": []}, "inputs is empty"),
        ({"inputs": ["a.mp4"]}, "'a.mp4' is not an absolute path"),
        ({"inputs": ["/a\x00b"]}, "is not a valid path"),
        ({"inputs": ["/a"] * 1001}, "1001 inputs"),
        ({"variations": 0}, "variations is 0"),
        ({"concurrency": 65}, "concurrency is 65"),
        ({"output_dir": ""}, "output_dir is empty"),
        ({"output_dir": "rel"}, "output_dir 'rel' is not an absolute path"),
        ({"threads": 0}, "threads is 0"),
        ({"chunk_size": 0}, "chunk_size is 0"),
        ({"variations": "x"}, "variations: Input should be a valid integer"),
    ],
)
def test_bad_request_names_the_problem(change: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError, match=None) as err:
        parse_request({**GOOD, **change})
    assert message in str(err.value)


def test_missing_field_is_named() -> None:
    with pytest.raises(RequestError) as err:
        parse_request({"inputs": ["/a.mp4"], "variations": 1})
    assert "output_dir: Field required" in str(err.value)


def test_not_an_object() -> None:
    with pytest.raises(RequestError, match="expected a JSON object, got list"):
        parse_request(["/a.mp4"])


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("", "empty"),
        ("..", "relative"),
        ("a/b", "separator"),
        ("a\x00", "NUL"),
        ("-x", "starts with '-'"),
        ("a\nb", "control"),
        ("x" * 201, "longer"),
    ],
)
def test_unsafe_job_ids(job_id: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        check_job_id(job_id)


def test_safe_job_id() -> None:
    check_job_id("varia-20261129-161425-3f9a2c")
