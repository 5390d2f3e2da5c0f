"""The pure argv builder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varia import names
from varia.allowlist import ALLOWED_DEMUXERS
from varia.ffmpeg.argv import (
    audio_filters,
    build_render_argv,
    file_url,
    render_tag,
    video_filters,
    video_map,
)
from varia.models import MediaInfo, Recipe, RenderTask


def media(path: str = "/in/clip.mp4", *, audio: bool = True) -> MediaInfo:
    return MediaInfo(path=path, duration_s=4.0, width=641, height=361, fps=25.0, has_audio=audio)


def task(recipe: Recipe, *, audio: bool = True, path: str = "/in/clip.mp4") -> RenderTask:
    return RenderTask(
        job_dir="/out/job",
        input_index=0,
        variation=0,
        media=media(path, audio=audio),
        recipe=recipe,
        output_name="clip_v000.mp4",
        threads=2,
    )


def test_paths_are_file_urls_never_options() -> None:
    argv = build_render_argv("ffmpeg", task(Recipe(), path="/in/-rf weird 'name'.mp4"), "/out/x")
    assert argv[argv.index("-i") + 1] == "file:/in/-rf weird 'name'.mp4"
    assert argv[-1] == "file:/out/x"
    assert file_url("/a/http:b") == "file:/a/http:b"


def test_stdin_stays_open_and_progress_goes_to_stdout() -> None:
    argv = build_render_argv("ffmpeg", task(Recipe()), "/out/x")
    assert "-nostdin" not in argv
    assert argv[argv.index("-progress") + 1] == "pipe:1"
    assert "-stats_period" in argv
    assert argv[argv.index("-threads") + 1] == "2"
    assert argv[argv.index("-f") + 1] == "mp4"


def test_identity_recipe_keeps_size_and_format() -> None:
    chain = video_filters(Recipe(), media())
    assert chain.startswith("scale=640:360,")  # even dimensions for yuv420p
    assert "crop" not in chain and "hflip" not in chain and "setpts" not in chain
    assert chain.endswith("format=yuv420p")
    assert audio_filters(Recipe()) is None


def test_every_knob_reaches_the_filters() -> None:
    recipe = Recipe(
        brightness=0.05,
        contrast=1.05,
        saturation=0.9,
        hue_degrees=-7.5,
        zoom=1.1,
        pan_x=0.25,
        pan_y=0.75,
        mirror=True,
        speed=1.04,
        noise=5,
        crf=27,
    )
    chain = video_filters(recipe, media())
    for part in (
        "crop=iw/1.1000",
        "hflip",
        "brightness=0.0500",
        "contrast=1.0500",
        "saturation=0.9000",
        "hue=h=-7.50",
        "noise=alls=5",
        "setpts=PTS/1.0400",
    ):
        assert part in chain
    argv = build_render_argv("ffmpeg", task(recipe), "/out/x")
    assert argv[argv.index("-af") + 1] == "atempo=1.0400"
    assert argv[argv.index("-crf") + 1] == "27"


def test_audio_maps_only_when_present() -> None:
    with_audio = build_render_argv("ffmpeg", task(Recipe(speed=1.02)), "/o")
    without = build_render_argv("ffmpeg", task(Recipe(speed=1.02), audio=False), "/o")
    assert "0:a:0" in with_audio and "-af" in with_audio
    assert "0:a:0" not in without and "-af" not in without and "-c:a" not in without


def test_the_probed_video_stream_is_mapped_and_older_probes_map_the_first() -> None:
    older = task(Recipe())
    assert older.media.video_stream is None and video_map(older.media) == "0:v:0"
    chosen = older.media.model_copy(update={"video_stream": 1})
    argv = build_render_argv("ffmpeg", older.model_copy(update={"media": chosen}), "/out/x")
    assert argv[argv.index("-map") + 1] == "0:1"


def test_the_render_tag_names_the_render_not_where_ffmpeg_lives() -> None:
    one = task(Recipe(zoom=1.05))
    here = build_render_argv("/usr/bin/ffmpeg", one, "/job/.x.mp4.part")
    there = build_render_argv("/opt/other/ffmpeg", one, "/job/.x.mp4.part")
    assert render_tag(here) == render_tag(there)  # a retry on another worker adopts it
    assert render_tag(here) != render_tag(build_render_argv("ffmpeg", one, "/job/.y.mp4.part"))
    other_recipe = task(Recipe(zoom=1.06))
    assert render_tag(here) != render_tag(
        build_render_argv("/usr/bin/ffmpeg", other_recipe, "/job/.x.mp4.part")
    )


def test_temp_name_is_hidden_and_distinct(tmp_path: Path) -> None:
    t = task(Recipe())
    assert t.temp_name == names.temp_name("clip_v000.mp4")
    assert t.expected_duration_s == 4.0


def test_input_is_read_with_the_probed_demuxer_and_local_files_only() -> None:
    """Issue 9 defect 8: FFmpeg may not open anything but the input file itself."""
    probed = task(Recipe()).model_copy(
        update={"media": media().model_copy(update={"demuxer": "mov"})}
    )
    argv = build_render_argv("ffmpeg", probed, "/out/x")
    before_input = argv[: argv.index("-i")]
    assert before_input[-5:] == ["-protocol_whitelist", "file", "-noautorotate", "-f", "mov"]
    old_history = build_render_argv("ffmpeg", task(Recipe()), "/out/x")  # MediaInfo without it
    assert old_history[old_history.index("-i") - 3 :][:2] == ["-protocol_whitelist", "file"]
    playlist = probed.model_copy(update={"media": media().model_copy(update={"demuxer": "hls"})})
    with pytest.raises(ValueError, match="'hls'"):
        build_render_argv("ffmpeg", playlist, "/out/x")


_VALUE_OPTIONS = {
    "-force_key_frames",
    "-loglevel",
    "-progress",
    "-stats_period",
    "-protocol_whitelist",
    "-f",
    "-i",
    "-map",
    "-vf",
    "-af",
    "-c:v",
    "-preset",
    "-crf",
    "-threads",
    "-c:a",
    "-b:a",
    "-movflags",
    "-metadata",
}
_FLAGS = {"-hide_banner", "-nostats", "-y", "-noautorotate"}
_FILTERS = {
    "crop",
    "scale",
    "setsar",
    "hflip",
    "vflip",
    "eq",
    "hue",
    "noise",
    "setpts",
    "format",
    "atempo",
}
_PATH = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40).map(
    lambda tail: "/" + tail
) | st.sampled_from(["/-i", "/-y x", "/a/http:evil", "/c/concat:a|b", "/d\nnew line", "/e/ :x"])
_FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=300, deadline=None)
@given(
    path=_PATH,
    output=_PATH,
    recipe=st.builds(
        Recipe,
        brightness=_FLOAT,
        contrast=_FLOAT,
        saturation=_FLOAT,
        hue_degrees=_FLOAT,
        zoom=st.floats(0.5, 3.0),
        pan_x=_FLOAT,
        pan_y=_FLOAT,
        mirror=st.booleans(),
        speed=st.floats(0.25, 4.0),
        noise=st.integers(0, 100),
        crf=st.integers(0, 51),
    ),
    size=st.tuples(st.integers(1, 20_000), st.integers(1, 20_000)),
    audio=st.booleans(),
    demuxer=st.sampled_from([None, *ALLOWED_DEMUXERS]),
    threads=st.none() | st.integers(1, 64),
)
def test_argv_reads_and_writes_only_its_file_urls(
    path: str,
    output: str,
    recipe: Recipe,
    size: tuple[int, int],
    audio: bool,
    demuxer: str | None,
    threads: int | None,
) -> None:
    """Over arbitrary tasks: the only paths in the argv are the input's and the temp output's
    `file:` URLs; every other element is a known option, a fixed value or a filter varia
    builds (no filter that reads a file, like `movie` or `subtitles`)."""
    info = MediaInfo(
        path=path,
        duration_s=3.0,
        width=size[0],
        height=size[1],
        fps=25.0,
        has_audio=audio,
        demuxer=demuxer,
    )
    one = RenderTask(
        job_dir="/out/job",
        input_index=0,
        variation=0,
        media=info,
        recipe=recipe,
        output_name="x_v000.mp4",
        threads=threads,
    )
    argv = build_render_argv("/usr/bin/ffmpeg", one, output)
    assert argv[0] == "/usr/bin/ffmpeg" and argv[-1] == file_url(output)
    assert argv[-1].startswith("file:/")
    rest = argv[1:-1]
    i = 0
    while i < len(rest):
        option = rest[i]
        if option in _FLAGS:
            i += 1
            continue
        assert option in _VALUE_OPTIONS, f"unexpected argv element {option!r}"
        value = rest[i + 1]
        if option == "-i":
            assert value == file_url(path) and value.startswith("file:/")
        elif option == "-metadata":  # the render's own tag: a digest, never a path
            assert re.fullmatch(r"comment=varia render [0-9a-f]{32}", value), value
        elif option == "-progress":
            assert value == "pipe:1"
        elif option == "-force_key_frames":  # keyframes at the measured samples: times only
            assert re.fullmatch(r"\d+\.\d{3}(,\d+\.\d{3})*", value), value
        elif option == "-protocol_whitelist":
            assert value == "file"
        elif option == "-f":
            assert value in (*ALLOWED_DEMUXERS, "mp4")
        elif option in ("-vf", "-af"):
            names = {part.split("=", 1)[0] for part in value.split(",")}
            assert names <= _FILTERS, names
            assert "file:" not in value and "\n" not in value
        else:
            assert "/" not in value and ":" not in value.replace(video_map(one.media), "").replace(
                "0:a:0", ""
            )
        i += 2
    assert rest.count("-i") == 1


def test_worker_threads_default_applies_only_when_the_job_set_none() -> None:
    """`VARIA_FFMPEG_THREADS` fills in `-threads` for a job without `threads`; unset, FFmpeg
    chooses (no flag)."""
    from varia.activities import with_default_threads

    unset = task(Recipe()).model_copy(update={"threads": None})
    assert "-threads" not in build_render_argv("ffmpeg", with_default_threads(unset, None), "/o")
    argv = build_render_argv("ffmpeg", with_default_threads(unset, 3), "/o")
    assert argv[argv.index("-threads") + 1] == "3"
    argv = build_render_argv("ffmpeg", with_default_threads(task(Recipe()), 3), "/o")
    assert argv[argv.index("-threads") + 1] == "2"  # the job's own choice wins
