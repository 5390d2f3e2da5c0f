"""The pure `-progress` parser."""

from __future__ import annotations

from varia.ffmpeg.progress import ProgressParser, ProgressReport

BLOCK = (
    b"frame=50\nfps=25.00\nstream_0_0_q=28.0\nbitrate= 512.0kbits/s\ntotal_size=65536\n"
    b"out_time_us=2000000\nout_time_ms=2000000\nout_time=00:00:02.000000\ndup_frames=0\n"
    b"drop_frames=0\nspeed=1.5x\nprogress=continue\n"
)


def test_one_block_gives_one_report() -> None:
    [report] = list(ProgressParser().feed(BLOCK))
    assert report == ProgressReport(
        frame=50, fps=25.0, out_time_s=2.0, total_size=65536, speed=1.5, ended=False
    )
    assert report.percent(4.0) == 50.0
    assert report.eta_s(4.0) == (4.0 - 2.0) / 1.5


def test_torn_lines_across_chunks_are_joined() -> None:
    parser = ProgressParser()
    reports = []
    for i in range(0, len(BLOCK), 7):  # every split point, lines torn mid-key and mid-value
        reports += list(parser.feed(BLOCK[i : i + 7]))
    assert [r.out_time_s for r in reports] == [2.0]


def test_na_values_are_none_and_fall_back() -> None:
    block = b"frame=0\nfps=N/A\nout_time_us=N/A\nout_time_ms=500000\nspeed=N/A\nprogress=continue\n"
    [report] = list(ProgressParser().feed(block))
    assert report.fps is None and report.speed is None
    assert report.out_time_s == 0.5  # out_time_ms is microseconds too
    assert report.eta_s(2.0) is None


def test_all_na_gives_zero_percent() -> None:
    [report] = list(ProgressParser().feed(b"out_time_us=N/A\nprogress=continue\n"))
    assert report.percent(10.0) == 0.0


def test_end_means_done() -> None:
    [first, last] = list(ProgressParser().feed(BLOCK + BLOCK.replace(b"continue", b"end")))
    assert not first.ended and last.ended
    assert last.percent(100.0) == 100.0 and last.eta_s(100.0) == 0.0


def test_fields_do_not_leak_between_blocks() -> None:
    second = b"frame=60\nprogress=continue\n"
    [_, report] = list(ProgressParser().feed(BLOCK + second))
    assert report.frame == 60 and report.out_time_s is None


def test_garbage_and_unknown_keys_are_ignored() -> None:
    data = b"\n\nnonsense without equals\nweird_key=1\nframe=abc\nprogress=continue\n"
    [report] = list(ProgressParser().feed(data))
    assert report.frame is None


def test_percent_is_clamped() -> None:
    report = ProgressReport(out_time_s=12.0)
    assert report.percent(10.0) == 100.0
    assert ProgressReport(out_time_s=-1.0).percent(10.0) == 0.0
