"""Request checks name the problem (no server needed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varia.models import (
    MAX_CONCURRENCY,
    MAX_INPUTS,
    MAX_THREADS,
    MAX_TOTAL_VARIATIONS,
    MAX_VARIATIONS,
)
from varia.validation import (
    REQUEST_FIELDS,
    RequestError,
    check_job_id,
    check_threads,
    check_total,
    edit_distance,
    ignored_fields,
    misspelt_fields,
    parse_request,
)

GOOD = {"inputs": ["/in/a.mp4"], "variations": 2, "output_dir": "/out"}


def test_good_request_with_defaults() -> None:
    request = parse_request(dict(GOOD))
    assert (request.seed, request.concurrency, request.threads) == (None, 1, None)


def test_unknown_fields_are_ignored() -> None:
    assert parse_request({**GOOD, "future_option": True}).variations == 2
    assert ignored_fields({**GOOD, "future_option": True}) == ["future_option"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"variations": "2"}, "variations"),
        ({"variations": 2.0}, "variations"),
        ({"variations": True}, "variations"),
        ({"seed": "7"}, "seed"),
        ({"seed": True}, "seed"),
        ({"concurrency": "2"}, "concurrency"),
        ({"min_ssim": "0.5"}, "min_ssim"),
        ({"inputs": "/in/a.mp4"}, "inputs"),
    ],
)
def test_types_are_strict(change: dict[str, object], field: str) -> None:
    """A quoted number, a float or a boolean where an integer belongs is refused, naming the
    field and what was given; runs started before strict types replay with lax ones."""
    with pytest.raises(RequestError) as err:
        parse_request({**GOOD, **change})
    assert f"{field}: Input should be a valid" in str(err.value)
    assert repr(next(iter(change.values()))) in str(err.value)
    if change != {"inputs": "/in/a.mp4"}:
        parse_request({**GOOD, **change}, strict=False)  # as such a run was read then


@pytest.mark.parametrize(
    ("field", "guess"),
    [
        ("concurency", "concurrency"),
        ("sead", "seed"),
        ("Seed", "seed"),
        ("output-dir", "output_dir"),
        ("outputDir", "output_dir"),
        ("varitaions", "variations"),
        ("chunksize", "chunk_size"),
    ],
)
def test_a_misspelt_field_is_refused_with_a_guess(field: str, guess: str) -> None:
    with pytest.raises(RequestError, match=f"unknown field '{field}' \\(did you mean '{guess}'"):
        parse_request({**GOOD, field: 1})
    parse_request({**GOOD, field: 1}, strict=False)  # older runs ignored it


def _one_edit(word: str, data: st.DataObject) -> str:
    at = data.draw(st.integers(0, len(word)))
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    kind = data.draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
    if kind == "insert" or len(word) < 2:
        return word[:at] + letter + word[at:]
    at = min(at, len(word) - 2)
    if kind == "delete":
        return word[:at] + word[at + 1 :]
    if kind == "replace":
        return word[:at] + letter + word[at + 1 :]
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_every_field_one_edit_away_is_taken_for_a_typo(data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(REQUEST_FIELDS))
    typo = _one_edit(field, data)
    if typo in REQUEST_FIELDS:
        return
    assert edit_distance(typo, field) <= 1
    assert f"unknown field {typo!r}" in misspelt_fields({typo: 1})


@given(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=14))
@settings(max_examples=300, deadline=None)
def test_a_field_far_from_every_known_one_is_ignored(name: str) -> None:
    bare = name.replace("_", "")
    far = all(edit_distance(bare, field.replace("_", "")) > 2 for field in REQUEST_FIELDS)
    if far and name not in REQUEST_FIELDS:
        assert misspelt_fields({name: 1}) == ""
        assert parse_request({**GOOD, name: 1}).variations == 2


@given(st.text(max_size=8), st.text(max_size=8))
def test_edit_distance_is_a_distance(a: str, b: str) -> None:
    assert edit_distance(a, b) == edit_distance(b, a)
    assert (edit_distance(a, b) == 0) == (a == b)
    assert abs(len(a) - len(b)) <= edit_distance(a, b) <= max(len(a), len(b))


def test_known_fields_are_not_typos() -> None:
    assert misspelt_fields({field: 1 for field in REQUEST_FIELDS}) == ""


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
        ("😀" * 100, "400 bytes long in UTF-8; at most 200"),
        (" ", "white space"),
        ("job ", "white space"),
        ("a\x7fb", "U\\+007F"),
        ("a\u2028b", "U\\+2028"),
        ("evil\u202egnp.mp4", "text-direction"),
    ],
)
def test_unsafe_job_ids(job_id: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        check_job_id(job_id)
    if message in ("400 bytes long in UTF-8; at most 200", "white space", "text-direction"):
        check_job_id(job_id, strict=False)  # runs started before these rules replay as they ran


def test_safe_job_id() -> None:
    check_job_id("varia-20261129-161425-3f9a2c")


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-3, 70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["/in/a.mp4", "/out", "rel", "", "/a\x00b", "/-x", "/http:x", "2", "1e3"])
)
_JSONISH = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = ["inputs", "variations", "output_dir", "seed", "concurrency", "threads", "chunk_size"]
_PATHS = st.lists(
    st.sampled_from(["/in/a.mp4", "/in/b.mp4", "a.mp4", "", "/x\x00y", "/in/é ü.mov"])
    | st.text(max_size=10),
    max_size=5,
) | st.sampled_from([["/in/a.mp4"] * 1000, ["/in/a.mp4"] * 1001])
_REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "inputs": _PATHS | _JSONISH,
        "variations": st.integers(-2, 10_002) | _JSONISH,
        "output_dir": st.sampled_from(["/out", "out", "", "/o\x00"]) | _JSONISH,
        "seed": st.integers() | _JSONISH,
        "concurrency": st.integers(-1, 66) | _JSONISH,
        "threads": st.none() | st.integers(-1, 3) | _JSONISH,
        "chunk_size": st.none() | st.integers(-1, 3) | _JSONISH,
    },
) | st.dictionaries(st.sampled_from([*_FIELDS, "extra"]), _JSONISH)


@settings(max_examples=200, deadline=None)
@given(raw=_REQUESTS | _JSONISH)
def test_parse_request_accepts_only_requests_within_bounds(raw: object) -> None:
    """Over arbitrary JSON-ish input: either a `RequestError`, or a request within every bound."""
    try:
        request = parse_request(raw)
    except RequestError as err:
        assert str(err).startswith("invalid job request: ")
        return
    assert 1 <= len(request.inputs) <= MAX_INPUTS
    assert all(path.startswith("/") and "\x00" not in path for path in request.inputs)
    assert 1 <= request.variations <= MAX_VARIATIONS
    assert 1 <= request.concurrency <= MAX_CONCURRENCY
    assert request.output_dir.startswith("/") and "\x00" not in request.output_dir
    assert request.threads is None or request.threads >= 1
    assert request.chunk_size is None or request.chunk_size >= 1
    assert parse_request(request.model_dump()) == request  # what the workflow carries re-parses


@settings(max_examples=200, deadline=None)
@given(job_id=st.text(max_size=210))
def test_check_job_id_refuses_only_with_request_error(job_id: str) -> None:
    try:
        check_job_id(job_id)
    except RequestError:
        return
    assert job_id and "/" not in job_id and job_id not in (".", "..")
    assert not job_id.startswith("-") and all(ord(ch) >= 32 for ch in job_id)


@settings(max_examples=200, deadline=None)
@given(inputs=st.integers(1, MAX_INPUTS), variations=st.integers(1, MAX_VARIATIONS))
def test_check_total_refuses_exactly_the_jobs_over_the_cap(inputs: int, variations: int) -> None:
    """Within the per-field bounds a job could plan 10,000,000 outputs, whose cancel never
    closed (found by an attacker's review): `varia start` and prepare refuse over the cap."""
    try:
        check_total(inputs, variations)
    except RequestError as err:
        assert inputs * variations > MAX_TOTAL_VARIATIONS
        assert f"{MAX_TOTAL_VARIATIONS:,}" in str(err) and "several jobs" in str(err)
    else:
        assert inputs * variations <= MAX_TOTAL_VARIATIONS


@given(st.integers(-(2**70), 2**70) | st.none())
def test_check_threads_refuses_exactly_the_counts_over_the_cap(threads: int | None) -> None:
    try:
        check_threads(threads)
    except RequestError as err:
        assert threads is not None and threads > MAX_THREADS and str(MAX_THREADS) in str(err)
    else:
        assert threads is None or threads <= MAX_THREADS


def test_check_total_at_the_edges() -> None:
    check_total(100, MAX_TOTAL_VARIATIONS // 100)
    with pytest.raises(RequestError, match="1000 inputs of 10000 variations each make 10,000,000"):
        check_total(MAX_INPUTS, MAX_VARIATIONS)
