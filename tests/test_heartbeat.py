"""Render heartbeat details: readable for people, and the retry reaper finds the temp path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from varia.models import RenderHeartbeat
from varia.names import temp_name
from varia.recipes import make_recipe, recipe_summary

names = st.from_regex(r"[a-z][a-z0-9_]{0,20}_v[0-9]{3}\.mp4", fullmatch=True)


@hypothesis_settings(deadline=None)  # a loaded CI machine is slow; no timing here
@given(name=names, directory=st.from_regex(r"/[a-z]{1,8}(/[a-z0-9-]{1,8}){0,3}", fullmatch=True))
def test_reaper_finds_the_temp_path_in_new_and_old_heartbeats(name: str, directory: str) -> None:
    temp = f"{directory}/{temp_name(name)}"
    assert RenderHeartbeat(output=name, temp=temp).temp_path() == temp
    # a worker of the previous version sent the temporary path as `output`
    assert RenderHeartbeat(output=temp).temp_path() == temp
    # a final name alone is never taken for a temporary path
    assert RenderHeartbeat(output=name).temp_path() == ""


@hypothesis_settings(deadline=None)  # a loaded CI machine is slow; no timing here
@given(seed=st.integers(0, 2**31), variation=st.integers(0, 9999))
def test_recipe_summary_is_one_short_line(seed: int, variation: int) -> None:
    line = recipe_summary(make_recipe(seed, 0, variation))
    assert "\n" not in line and line.startswith("zoom ") and "crf " in line
    assert len(line) < 120
