"""Property tests: output names for arbitrary multisets of input paths (issue 9, defect 1)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from varia.jobdir import owned_names
from varia.names import (
    LEDGER_NAME,
    MANIFEST_NAME,
    MARKER_NAME,
    parse_render_activity_id,
    parse_temp_name,
    render_activity_id,
    temp_name,
)
from varia.recipes import STEM_MAX, output_name, output_stems, safe_stem

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*_v[0-9]{3,}\.mp4")
_RESERVED = {MANIFEST_NAME, MARKER_NAME, LEDGER_NAME}

# Names chosen to clash: same stem, case twins, disambiguation look-alikes, sanitised twins,
# long names that only differ after the cut, unicode that sanitises to nothing.
_TRICKY = st.sampled_from(
    [
        "x.mp4",
        "X.mp4",
        "x-0.mp4",
        "x-1.mp4",
        "x~0.mp4",
        "x~1.mp4",
        "x_1.mp4",
        "a b.mp4",
        "a_b.mp4",
        "a:b.mp4",
        "input.mp4",
        "é.mp4",
        "ß.mp4",
        "SS.mp4",
        "ss.mp4",
        "\u212a.mp4",
        "k.mp4",
        ".mp4",
        "-x.mp4",
        "manifest.json",
        ".varia-job",
        "varia-job.mp4",
        "y" * 70 + "1.mp4",
        "y" * 70 + "2.mp4",
        "Y" * 61 + ".mp4",
        "x_v000.mp4",
        "x.mp4.part",
    ]
)
_NAME = st.one_of(
    _TRICKY,
    st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=80),
)
_DIR = st.sampled_from(["/a", "/b", "/a/b", "/c d", "/-x", "/http:", "/ü"])
_PATHS = st.lists(st.builds(lambda d, n: f"{d}/{n}", _DIR, _NAME), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(inputs=_PATHS, variations=st.integers(1, 1500))
def test_output_names_are_unique_safe_and_deterministic(inputs: list[str], variations: int) -> None:
    stems = output_stems(inputs)
    assert stems == output_stems(list(inputs)), "same request, same names"
    assert len(stems) == len(inputs)
    assert len({stem.casefold() for stem in stems}) == len(stems), "case-insensitive clash"
    for v in sorted({0, variations - 1}):
        finals = [output_name(stem, v, variations) for stem in stems]
        temps = [temp_name(name) for name in finals]
        every = finals + temps
        assert len({name.casefold() for name in every}) == len(every)
        for name in finals:
            assert _SAFE_NAME.fullmatch(name), name
            assert name not in _RESERVED and not name.startswith(".")
        assert not _RESERVED & set(temps)
        assert all(len(name.encode()) < 255 for name in every)


@settings(max_examples=200, deadline=None)
@given(inputs=_PATHS)
def test_names_without_a_clash_are_the_sanitised_stems(inputs: list[str]) -> None:
    """Stable: an input whose stem no other input shares keeps today's name."""
    plain = [safe_stem(path) for path in inputs]
    folded = [stem.casefold() for stem in plain]
    for path, stem, out in zip(inputs, plain, output_stems(inputs), strict=True):
        assert len(stem) <= STEM_MAX and "~" not in stem
        if folded.count(stem.casefold()) == 1:
            assert out == stem, path
        else:
            assert out.startswith(stem + "~"), path


@settings(max_examples=100, deadline=None)
@given(inputs=_PATHS, variations=st.integers(1, 30))
def test_cleanup_owns_exactly_the_planned_names(inputs: list[str], variations: int) -> None:
    """`jobdir.owned_names` (what cleanup may delete) = the planned outputs and their temps."""
    stems = output_stems(inputs)
    planned = {output_name(stem, v, variations) for stem in stems for v in range(variations)}
    owned = owned_names(stems, variations)
    assert planned | {temp_name(name) for name in planned} <= owned
    extra = owned - planned - {temp_name(name) for name in planned}
    assert all(name.startswith(".varia-tmp-") for name in extra), extra
    assert not owned & _RESERVED


@given(st.text())
def test_temp_name_round_trips(name: str) -> None:
    """Every output name's temporary name parses back to it; a final name is not a temp."""
    assert parse_temp_name(temp_name(name)) == name
    if not name.startswith("."):
        assert parse_temp_name(name) is None


@given(st.integers(min_value=0), st.integers(min_value=0))
def test_render_activity_id_round_trips(input_index: int, variation: int) -> None:
    """`render-<input>-<variation>` parses back to its two numbers."""
    activity_id = render_activity_id(input_index, variation)
    assert parse_render_activity_id(activity_id) == (input_index, variation)


@given(st.text())
def test_other_activity_ids_are_not_renders(activity_id: str) -> None:
    """Only ids of the render form parse; anything else gives None, never an error."""
    parsed = parse_render_activity_id(activity_id)
    assert parsed is None or render_activity_id(*parsed) == activity_id.rstrip("\n")


def test_the_registered_forms() -> None:
    """The exact forms in histories and job directories (never change them)."""
    assert temp_name("clip_v000.mp4") == ".clip_v000.mp4.part"
    assert render_activity_id(1, 3) == "render-1-3"
