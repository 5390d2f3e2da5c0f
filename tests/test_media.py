"""Probing inputs and proving outputs whole with PyAV."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import av
import av.error
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests import bad_inputs
from tests.conftest import Clips
from tests.helpers import render_task, wait_for
from varia import output_record
from varia.activities import JobActivities
from varia.config import Settings
from varia.errors import BAD_INPUT
from varia.ffmpeg.argv import build_render_argv
from varia.jobdir import open_job_dir
from varia.media import MediaError, check_output, check_unchanged, describe_error, probe
from varia.models import InputLimits, Recipe, RenderTask


def test_probe_reads_what_the_plan_needs(clips: Clips) -> None:
    info = probe(str(clips.short))
    assert (info.width, info.height, info.fps, info.has_audio) == (320, 240, 25.0, True)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert probe(str(clips.silent)).has_audio is False


async def test_a_killed_encode_is_rejected(clips: Clips, tmp_path: Path) -> None:
    """SIGKILL leaves an MP4 without its index: it must never pass as an output."""
    out = tmp_path / "killed.mp4"
    proc = subprocess.Popen(
        [
            Settings().ffmpeg_path(),
            "-loglevel",
            "error",
            "-i",
            str(clips.long),
            "-c:v",
            "libx264",
            "-threads",
            "1",
            "-f",
            "mp4",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        await wait_for(
            lambda: out.exists() and out.stat().st_size > 50_000, what="FFmpeg to write data"
        )
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(MediaError):
        check_output(str(out), 20.0, 0.2)


def test_a_short_output_is_rejected(clips: Clips) -> None:
    assert check_output(str(clips.short), 2.0, 0.12) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaError, match=r"expected about 3\.00s"):
        check_output(str(clips.short), 3.0, 0.12)


def test_an_output_whose_first_keyframe_is_garbage_is_rejected(
    clips: Clips, tmp_path: Path
) -> None:
    """The check decodes the first keyframe alone (cheaply); garbage there is still caught,
    and a whole file still passes."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clips.short.read_bytes())
    with av.open(str(clips.short)) as container:
        video = container.streams.video[0]
        first = next(packet for packet in container.demux(video) if packet.size)
        assert first.is_keyframe and first.pos is not None
        position, size = first.pos, first.size
    with open(broken, "r+b") as handle:
        handle.seek(position + 8)  # past the NAL length and header: the slice data
        handle.write(bytes(size - 16))
    assert check_output(str(clips.short), 2.0, 0.12) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaError, match="does not decode"):
        check_output(str(broken), 2.0, 0.12)


def test_truncated_faststart_file_is_caught(clips: Clips, tmp_path: Path) -> None:
    whole = tmp_path / "fs.mp4"
    subprocess.run(
        [
            Settings().ffmpeg_path(),
            "-loglevel",
            "error",
            "-i",
            str(clips.long),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(whole),
        ],
        check=True,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MediaError) as refused:
        probe(str(cut))
    message = str(refused.value)
    assert "is truncated: no video packet of its last second is there" in message, message
    assert "packets end at" not in message  # not a made-up end of 0.00s


def _atime_marked(path: Path) -> None:
    """Make the next read of `path` visible in its atime (atime older than mtime: relatime too)."""
    os.utime(path, (1_000_000, 2_000_000))


def _was_read(path: Path) -> bool:
    return path.stat().st_atime != 1_000_000


@pytest.fixture
def atime_works(tmp_path: Path) -> None:
    probe_file = tmp_path / "atime-check"
    probe_file.write_bytes(b"x" * 10)
    _atime_marked(probe_file)
    probe_file.read_bytes()
    if not _was_read(probe_file):
        pytest.skip("this file system does not record reads in atime (noatime)")


def test_playlists_and_multi_file_inputs_are_refused(
    tmp_path: Path, clips: Clips, atime_works: None
) -> None:
    """Issue 9 defect 8: a playlist, a concat list or an image sequence passed the probe, and
    the render read files outside the allowed roots. Now each is refused from its probed
    format, naming the file and the format, and nothing but the input itself is read."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    playlist = allowed / "innocent.m3u8"
    segment = bad_inputs.hls_playlist(playlist, outside)
    renamed = allowed / "innocent.mp4"
    shutil.copyfile(playlist, renamed)
    cases = [
        (playlist, "'hls'"),
        (renamed, "could not find a known container format"),  # FFmpeg refuses it by name
        (bad_inputs.concat_list(allowed / "list.ffconcat", clips.short), "'concat'"),
        (bad_inputs.concat_list(allowed / "list.mp4", clips.short), "'concat'"),
        (bad_inputs.image_sequence(allowed / "seq"), "'image2'"),
    ]
    for path, named in cases:
        for read in (segment, allowed / "part.mp4", allowed / "seq" / "frame001.png"):
            _atime_marked(read)
        with pytest.raises(MediaError) as refused:
            probe(str(path))
        message = str(refused.value)
        assert repr(str(path)) in message and named in message, message
        assert "Errno" not in message
        for read in (segment, allowed / "part.mp4", allowed / "seq" / "frame001.png"):
            assert not _was_read(read), f"probing {path.name} read {read}"


def test_a_playlist_never_reaches_the_network(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        playlist = bad_inputs.network_playlist(
            tmp_path / "remote.m3u8", f"http://127.0.0.1:{port}/seg0.ts"
        )
        with pytest.raises(MediaError, match="'hls'"):
            probe(str(playlist))
        with pytest.raises(BlockingIOError):
            listener.accept()  # a connection attempt would be waiting in the backlog


def test_still_images_and_unknown_data_are_refused_in_words(tmp_path: Path) -> None:
    """Issue 13 item 8: no raw `[Errno 1094995529]` in 'not a readable video'."""
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, not a video\n" * 20)
    assert refusal(text) == (
        f"input {str(text)!r} is not a readable video: FFmpeg could not find a known container "
        "format (Invalid data found when processing input)"
    )
    png = bad_inputs.image_sequence(tmp_path / "png").with_name("frame001.png")
    with pytest.raises(MediaError, match=r"'png_pipe'.*still images are refused"):
        probe(str(png))


def test_an_animated_gif_is_named_as_a_format_off_the_list_not_as_a_still(
    clips: Clips, tmp_path: Path
) -> None:
    gif = tmp_path / "loop.gif"
    subprocess.run(
        [
            Settings().ffmpeg_path(),
            "-loglevel",
            "error",
            "-t",
            "1",
            "-i",
            str(clips.short),
            str(gif),
        ],
        check=True,
    )
    with pytest.raises(MediaError) as refused:
        probe(str(gif))
    message = str(refused.value)
    assert message.startswith(
        f"input {str(gif)!r} is in a container format varia does not read: 'gif'."
    )
    assert "Convert it to one MP4 first" in message


def refusal(path: Path) -> str:
    """What probing `path` refuses it with."""
    with pytest.raises(MediaError) as refused:
        probe(str(path))
    return str(refused.value)


def test_an_audio_file_with_cover_art_is_named_as_one(tmp_path: Path) -> None:
    song = bad_inputs.audio_with_cover_art(tmp_path / "song.m4a")
    assert refusal(song) == (
        f"input {str(song)!r} has no video to vary: its only video is a still cover picture "
        "(an audio file with cover art?)"
    )


def test_audio_of_more_channels_than_aac_takes_is_refused_at_probe(tmp_path: Path) -> None:
    """16-channel audio passed the probe, then failed every render (retried) with a cut-off
    FFmpeg message (found by an attacker's review); 8 channels render."""
    eight = bad_inputs.many_channel_audio(tmp_path / "eight.mov", 8)
    assert probe(str(eight)).has_audio
    sixteen = bad_inputs.many_channel_audio(tmp_path / "sixteen.mov", 16)
    assert refusal(sixteen) == (
        f"input {str(sixteen)!r} has 16-channel audio; varia's audio encoder (AAC) takes at "
        "most 8: mix it down first (e.g. ffmpeg -ac 2)"
    )


async def test_a_cover_picture_before_the_video_is_passed_over(
    clips: Clips, tmp_path: Path
) -> None:
    """A thumbnail track ahead of the real video was rendered in its place, then refused as
    "truncated: its packets end at 0.04s" (found by an attacker's review)."""
    source = bad_inputs.cover_before_video(tmp_path / "covered.mkv", clips.short)
    info = probe(str(source))
    plain = probe(str(clips.short))
    assert (info.width, info.height) == (plain.width, plain.height)
    assert info.duration_s == pytest.approx(plain.duration_s, abs=0.05)
    task = RenderTask(
        job_dir=str(tmp_path), input_index=0, variation=0, media=info, recipe=Recipe(zoom=1.05),
        output_name="out.mp4",
    )  # fmt: skip
    brief = await ActivityEnvironment().run(JobActivities(Settings()).render, task)
    [result] = output_record.with_records(tmp_path, [brief])
    assert result.quality is not None and result.quality.ssim > 0.5  # the video, not the cover
    with av.open(str(tmp_path / "out.mp4")) as out:
        video = out.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (info.width, info.height)


def test_huge_declared_frame_is_refused_at_probe(tmp_path: Path) -> None:
    avi = bad_inputs.raw_avi(tmp_path / "huge.avi", declare=(15_000, 15_000))
    assert avi.stat().st_size < 20_000
    assert refusal(avi) == (
        f"input {str(avi)!r} has 15000x15000 frames (225,000,000 pixels); the limit is "
        "35,389,440 pixels (VARIA_MAX_INPUT_PIXELS)"
    )
    small = bad_inputs.raw_avi(tmp_path / "small.avi", size="320x240")
    assert probe(str(small)).width == 320  # the same file with an honest size is fine
    with pytest.raises(MediaError, match=r"76,800 pixels\); the limit is 76,799 pixels"):
        probe(str(small), InputLimits(max_pixels=320 * 240 - 1))


def test_endless_declared_duration_is_refused_at_probe(tmp_path: Path) -> None:
    mkv = bad_inputs.endless_mkv(tmp_path / "endless.mkv")
    assert refusal(mkv) == (
        f"input {str(mkv)!r} lasts 1,000,000,000,000 s; the limit is 14,400 s "
        "(VARIA_MAX_INPUT_DURATION)"
    )
    honest = bad_inputs.endless_mkv(tmp_path / "honest.mkv", seconds=1.0)
    assert probe(str(honest)).duration_s == pytest.approx(1.0, abs=0.05)
    with pytest.raises(MediaError, match=r"lasts 1 s; the limit is 0\.5 s"):
        probe(str(honest), InputLimits(max_duration_s=0.5))


def test_stream_count_and_file_size_limits(tmp_path: Path, clips: Clips) -> None:
    many = bad_inputs.many_streams_mkv(tmp_path / "many.mkv", clips.short, audio_streams=64)
    assert refusal(many) == (
        f"input {str(many)!r} has 65 streams; the limit is 64 (VARIA_MAX_INPUT_STREAMS)"
    )
    assert probe(str(many), InputLimits(max_streams=65)).has_audio
    size = clips.short.stat().st_size
    with pytest.raises(MediaError) as too_big:
        probe(str(clips.short), InputLimits(max_bytes=size - 1))
    assert str(too_big.value) == (
        f"input {str(clips.short)!r} is {size:,} bytes; the limit is {size - 1:,} bytes "
        "(VARIA_MAX_INPUT_BYTES)"
    )
    assert probe(str(clips.short), InputLimits(max_bytes=size)).demuxer == "mov"


def test_limit_messages_name_real_settings() -> None:
    aliases = {field.alias for field in Settings.model_fields.values()}
    for name in ("DURATION", "PIXELS", "STREAMS", "BYTES"):
        assert f"VARIA_MAX_INPUT_{name}" in aliases
    assert Settings().input_limits() == InputLimits()


@pytest.mark.parametrize("opening", [True, False])
def test_ffmpeg_errors_are_described_without_raw_numbers(opening: bool) -> None:
    """Issue 13 item 8: every PyAV error class reads as words, never `[Errno 1094995529]`."""
    classes = [
        cls
        for cls in vars(av.error).values()
        if isinstance(cls, type) and issubclass(cls, av.error.FFmpegError)
    ]
    assert len(classes) > 20
    for cls in classes:
        err = cls(1094995529, "Invalid data found when processing input", "/in/x.mp4")
        text = describe_error(err, opening)
        assert "Errno" not in text and "1094995529" not in text and "/in/x.mp4" not in text
        assert "Invalid data found when processing input" in text
    assert describe_error(FileNotFoundError(2, "No such file or directory"), opening) == (
        "No such file or directory"
    )


@pytest.mark.parametrize(
    ("suffix", "demuxer"),
    [(".mkv", "matroska"), (".avi", "avi"), (".ts", "mpegts"), (".flv", "flv")],
)
def test_allowed_containers_render_with_their_probed_demuxer(
    tmp_path: Path, clips: Clips, suffix: str, demuxer: str
) -> None:
    """The probed demuxer, forced with `-f` and `-protocol_whitelist file`, reads the input."""
    source = tmp_path / f"in{suffix}"
    codec = ["-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run(
        [
            Settings().ffmpeg_path(),
            "-loglevel",
            "error",
            "-i",
            str(clips.silent),
            *codec,
            str(source),
        ],
        check=True,
    )
    info = probe(str(source))
    assert info.demuxer == demuxer
    out = tmp_path / "out.mp4"
    task = RenderTask(
        job_dir=str(tmp_path), input_index=0, variation=0, media=info, recipe=Recipe(),
        output_name="out.mp4",
    )  # fmt: skip
    argv = build_render_argv(Settings().ffmpeg_path(), task, out)
    assert argv[argv.index("-i") - 1] == demuxer
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    assert check_output(str(out), info.duration_s, 0.2) == pytest.approx(info.duration_s, abs=0.2)


async def test_an_input_changed_since_its_probe_is_named_and_its_render_refused(
    clips: Clips, tmp_path: Path
) -> None:
    """An input replaced after prepare (`mv other.mp4 in.mp4` mid-job) made each render fail
    its output check 5 times, blaming the output; now the render refuses at once, naming the
    input, before FFmpeg runs (found by an attacker's review)."""
    source = tmp_path / "in.mp4"
    shutil.copyfile(clips.short, source)
    info = probe(str(source))
    check_unchanged(info)  # the file it probed
    check_unchanged(info.model_copy(update={"bytes": None}))  # probed by older varia

    os.utime(source, ns=(info.mtime_ns or 0, (info.mtime_ns or 0) + 10**9))  # `touch`ed
    with pytest.raises(MediaError) as touched:
        check_unchanged(info)
    message = str(touched.value)  # not "(6,505 bytes then, 6,505 now)", which reads as no change
    assert "changed since the job probed it (modified at " in message
    assert "same size" in message and "bytes then" not in message

    shutil.copyfile(clips.silent, source)  # another clip under the same name
    with pytest.raises(MediaError, match=r"changed since the job probed it \([\d,]+ bytes then"):
        check_unchanged(info)

    swap = tmp_path / "swap.mp4"  # another file, same size and time, moved to its path
    shutil.copyfile(clips.short, source)
    shutil.copyfile(clips.short, swap)
    info = probe(str(source))
    os.utime(swap, ns=(info.mtime_ns or 0, info.mtime_ns or 0))
    os.replace(swap, source)
    with pytest.raises(MediaError, match="was replaced by another file"):
        check_unchanged(info)
    check_unchanged(info.model_copy(update={"inode": None}))  # probed before inodes were kept

    job_dir = open_job_dir(tmp_path / "out", "job-changed")
    render = JobActivities(Settings()).render
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(render, render_task(info, job_dir))
    assert refused.value.type == BAD_INPUT and refused.value.non_retryable
    assert refused.value.message.count(str(source)) == 1, refused.value.message
    assert not [p for p in job_dir.iterdir() if p.suffix in (".mp4", ".part")]
