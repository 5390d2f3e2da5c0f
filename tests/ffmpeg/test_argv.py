"""The pure argv builder."""

from __future__ import annotations

from pathlib import Path

from varia.ffmpeg.argv import audio_filters, build_render_argv, file_url, video_filters
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


def test_temp_name_is_hidden_and_distinct(tmp_path: Path) -> None:
    t = task(Recipe())
    assert t.temp_name == ".clip_v000.mp4.part"
    assert t.expected_duration_s == 4.0
