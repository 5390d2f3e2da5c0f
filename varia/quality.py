"""The measured difference of an output: to its source (SSIM, PSNR, pHash) and to its siblings.

Figures come from well-kept code: SSIM and PSNR from FFmpeg's own `ssim` and `psnr` filters (run
in-process through PyAV's libavfilter), the perceptual hash is `imagehash`'s `phash` (64 bits;
its steps, batched: `phashes`).
They are measured on the luma plane of frames sampled at `varia.sampling.SAMPLE_POSITIONS`,
scaled to `varia.frames.METRIC_WIDTH`, and rounded, so the same request gives the same figures.
numpy, scipy and Pillow are imported here only, inside the activities' code paths and
`preload` (a worker calls it as it starts; the CLI never imports them).
"""

from __future__ import annotations

import functools
import os
import statistics
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import av
import av.filter

from varia.frames import SWS_THREADS, FrameError, frames_at, luma
from varia.models import FigureRange, Quality, QualitySummary, RenderResult
from varia.sampling import SAMPLE_POSITIONS, SHEET_POSITION, sample_times

if TYPE_CHECKING:
    import numpy as np

NEAR_DUPLICATE_BITS = 4.0
"""Two outputs whose mean pHash distance is at most this many bits (of 64) are near duplicates."""

PSNR_CAP_DB = 100.0
"""PSNR of identical frames (FFmpeg says `inf`) is reported as this."""


def source_samples(path: str, duration_s: float) -> list[np.ndarray]:
    """The source's luma samples; cached per worker by path, size and modification time."""
    return list(_source(path, duration_s).samples)


def source_hashes(path: str, duration_s: float) -> list[str]:
    """The pHash of each source sample (cached with the samples)."""
    return list(_source(path, duration_s).hashes)


def source_sample_times(path: str, duration_s: float) -> list[float]:
    """When each source sample is shown: its frame's timestamp in seconds on the stream's own
    clock (cached with the samples). A sample time that no frame starts at or after (a
    slideshow, a clip shorter than a frame) has the frame `frames_at` falls back to."""
    return list(_source(path, duration_s).times)


class _Source(NamedTuple):
    samples: tuple[np.ndarray, ...]
    hashes: tuple[str, ...]
    times: tuple[float, ...]


def _source(path: str, duration_s: float) -> _Source:
    stat = os.stat(path)
    return _source_cached(path, stat.st_size, stat.st_mtime_ns, round(duration_s, 6))


@functools.lru_cache(maxsize=16)
def _source_cached(path: str, size: int, mtime_ns: int, duration_s: float) -> _Source:
    del size, mtime_ns  # part of the cache key only
    frames = frames_at(path, sample_times(duration_s), source=True)
    samples = tuple(luma(frame) for frame in frames)
    return _Source(samples, tuple(phashes(samples)), tuple(_time(frame, path) for frame in frames))


def _time(frame: av.VideoFrame, path: str) -> float:
    if frame.pts is None or frame.time_base is None:
        raise FrameError(f"{path!r}: a sampled frame has no timestamp")
    return float(frame.pts * frame.time_base)


def output_samples(path: str, duration_s: float) -> list[np.ndarray]:
    """An output's luma samples at the same relative positions."""
    return [luma(frame) for frame in frames_at(path, sample_times(duration_s))]


def compare(sources: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean luma SSIM and PSNR (dB) of each output sample against its source sample.

    Output samples are scaled to the source sample's size first (an odd-sized source gives an
    output one pixel smaller).
    """
    pairs = [(s, _same_size(o, s)) for s, o in zip(sources, outputs, strict=True)]
    if len({source.shape for source, _ in pairs}) == 1:
        figures = _ffmpeg_metrics(pairs)
    else:  # sources of different sizes: one graph each
        figures = [figure for pair in pairs for figure in _ffmpeg_metrics([pair])]
    ssims = [ssim for ssim, _ in figures]
    psnrs = [min(psnr, PSNR_CAP_DB) for _, psnr in figures]
    return round(statistics.fmean(ssims), 4), round(statistics.fmean(psnrs), 2)


def _same_size(frame: np.ndarray, like: np.ndarray) -> np.ndarray:
    if frame.shape == like.shape:
        return frame
    gray = av.VideoFrame.from_ndarray(frame, format="gray")
    height, width = like.shape
    scaled = gray.reformat(width=width, height=height, interpolation="AREA", threads=SWS_THREADS)
    return scaled.to_ndarray()


def _ffmpeg_metrics(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
    """FFmpeg's `ssim` (Y) and `psnr` (y) of each (reference, distorted) pair of gray frames,
    all of one size, through this thread's filter graph for that size (`_MetricsGraph`)."""
    height, width = pairs[0][0].shape
    graphs: dict[tuple[int, int], _MetricsGraph] = _graphs.__dict__.setdefault("by_size", {})
    graph = graphs.pop((width, height), None) or _MetricsGraph(width, height)
    figures = graph.figures(pairs)  # a graph that raised is not put back
    graphs[(width, height)] = graph  # the most recently used last
    while len(graphs) > GRAPHS_PER_THREAD:
        del graphs[next(iter(graphs))]
    return figures


GRAPHS_PER_THREAD = 4
"""Filter graphs a thread keeps (one per frame size measured lately)."""
_graphs = threading.local()


class _MetricsGraph:
    """`split` -> `ssim` + `psnr` -> sinks for gray frames of one size, configured once and fed
    pair after pair (each pair's figures come out as soon as both frames are in; the filters
    compute each frame's figures from that frame alone, so a reused graph gives a fresh one's
    figures: `tests/test_measure_figures.py`). Building and configuring a graph cost more than
    measuring three small frames. No slice threads (see `varia.frames.SWS_THREADS`)."""

    def __init__(self, width: int, height: int) -> None:
        graph = av.filter.Graph()
        graph.threads = SWS_THREADS
        base = Fraction(1, 25)
        gray = av.VideoFormat("gray")
        main = graph.add_buffer(width=width, height=height, format=gray, time_base=base)
        ref = graph.add_buffer(width=width, height=height, format=gray, time_base=base)
        split_main, split_ref = graph.add("split", "2"), graph.add("split", "2")
        ssim, psnr = graph.add("ssim"), graph.add("psnr")
        ssim_sink, psnr_sink = graph.add("buffersink"), graph.add("buffersink")
        main.link_to(split_main)
        ref.link_to(split_ref)
        split_main.link_to(ssim, 0, 0)
        split_ref.link_to(ssim, 0, 1)
        split_main.link_to(psnr, 1, 0)
        split_ref.link_to(psnr, 1, 1)
        ssim.link_to(ssim_sink)
        psnr.link_to(psnr_sink)
        graph.configure()
        self.graph = graph  # the filter contexts below live as long as it does
        self.main, self.ref = main, ref
        self.ssim_sink, self.psnr_sink = ssim_sink, psnr_sink
        self.pts = 0

    def figures(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
        """(SSIM, PSNR) of each (reference, distorted) pair."""
        for reference, distorted in pairs:
            for source, frame in ((self.main, distorted), (self.ref, reference)):
                video = av.VideoFrame.from_ndarray(frame, format="gray")
                video.pts = self.pts
                source.push(video)
            self.pts += 1
        figures = []
        for _ in pairs:
            ssim_value = float(self.ssim_sink.pull().metadata["lavfi.ssim.Y"])
            psnr_value = float(self.psnr_sink.pull().metadata["lavfi.psnr.psnr.y"])
            figures.append((ssim_value, psnr_value))
        return figures


def phash(frame: np.ndarray) -> str:
    """The 64-bit perceptual hash (imagehash's `phash`) of a luma frame, as 16 hex digits."""
    return phashes([frame])[0]


def phashes(frames: Sequence[np.ndarray]) -> list[str]:
    """`phash` of each luma frame: imagehash's `phash` step by step (the same Pillow resize,
    `scipy.fftpack` DCT and median), the DCTs of all frames in one call and the hex digits
    packed by numpy (its Python bit-string loop cost more than the DCT). The hashes are
    imagehash's, bit for bit (`tests/test_measure_figures.py`)."""
    import numpy as np
    import scipy.fftpack
    from PIL import Image

    if not frames:
        return []
    size = HASH_SIZE * HASH_HIGHFREQ_FACTOR
    lanczos = Image.Resampling.LANCZOS  # imagehash's ANTIALIAS; gray frames are mode "L"
    resized = b"".join(
        Image.fromarray(frame).resize((size, size), lanczos).tobytes() for frame in frames
    )
    pixels = np.frombuffer(resized, dtype=np.uint8).reshape(len(frames), size, size)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    low = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(frames), -1)
    middle = np.sort(low, axis=1)[:, low.shape[1] // 2 - 1 : low.shape[1] // 2 + 1]
    medians = (middle[:, 0] + middle[:, 1]) / 2  # numpy.median of an even count, exactly
    packed = np.packbits(low > medians[:, None], axis=1).tobytes().hex()
    digits = len(packed) // len(frames)
    return [packed[i : i + digits] for i in range(0, len(packed), digits)]


def preload() -> None:
    """Import and run once what measuring and the contact sheet use (numpy, scipy's DCT,
    Pillow and its font, a metrics graph), as a worker starts. Otherwise the first renders to
    finish import them, in several threads at once, and that Python work holds the GIL that
    the worker's event loop needs: a fresh worker's first cancel took a median 0.68 s to reach
    the workflow's stop call, against 0.08 s after (benchmarks/README.md)."""
    import numpy as np

    from varia.sheet import preload_font

    blank = np.zeros((HASH_SIZE * HASH_HIGHFREQ_FACTOR,) * 2, dtype=np.uint8)
    phashes([blank])
    compare([blank], [blank])
    preload_font()


HASH_SIZE = 8
"""imagehash's default `hash_size`: 8 x 8 = 64 bits."""
HASH_HIGHFREQ_FACTOR = 4
"""imagehash's default `highfreq_factor`: the DCT runs on a 32 x 32 picture."""


def hash_distance(first: Sequence[str], second: Sequence[str]) -> float:
    """Mean Hamming distance (bits) between two equally long lists of hex hashes."""
    bits = [bin(int(a, 16) ^ int(b, 16)).count("1") for a, b in zip(first, second, strict=True)]
    return round(statistics.fmean(bits), 2)


def measure(
    source_path: str,
    source_duration_s: float,
    output_path: str,
    output_duration_s: float,
    cell: Path | None = None,
    frames: Sequence[av.VideoFrame] | None = None,
) -> Quality:
    """The measured difference of one output to its source (blocking: run it in a thread).

    With `cell`, the frame the contact sheet shows is saved there too (it was decoded anyway).
    `frames`: the output's samples already decoded (at `sample_times(output_duration_s)`, by
    the output check's opening of the file); else they are decoded here.
    """
    if frames is None:
        frames = frames_at(output_path, sample_times(output_duration_s))
    if cell is not None:
        from varia.sheet import save_cell

        save_cell(frames[SAMPLE_POSITIONS.index(SHEET_POSITION)], cell)
    sources = source_samples(source_path, source_duration_s)
    outputs = [luma(frame) for frame in frames]
    ssim, psnr = compare(sources, outputs)
    output_hashes = phashes(outputs)
    return Quality(
        positions=list(SAMPLE_POSITIONS),
        ssim=ssim,
        psnr_db=psnr,
        phash_distance=hash_distance(source_hashes(source_path, source_duration_s), output_hashes),
        phash=output_hashes,
    )


SIBLING_BLOCK = 256
"""Rows and columns of each block of the distance matrix (bounds memory at any job size; a
block's arrays stay in the CPU's cache)."""


def with_siblings(results: Sequence[RenderResult]) -> list[RenderResult]:
    """The results with each measured output's nearest sibling (same input) filled in.

    Distance is the mean pHash Hamming distance over the samples; ties go to the lower
    variation number. Pure; numpy, over blocks of the distance matrix, each computed once for
    both its rows and (transposed) its columns (10,000 outputs of one input: well under 1 s).
    """
    by_input: dict[int, list[RenderResult]] = {}
    for result in results:
        if result.quality is not None:
            by_input.setdefault(result.input_index, []).append(result)
    updated: dict[tuple[int, int], RenderResult] = {}
    for members in by_input.values():
        group = sorted(members, key=lambda r: r.variation)
        if len(group) < 2:
            continue
        hashes = [r.quality.phash for r in group if r.quality]
        distances, nearest = _nearest(hashes)
        samples = len(hashes[0])
        for index, result in enumerate(group):
            other = group[int(nearest[index])]
            distance = round(float(distances[index]) / samples, 2)
            assert result.quality is not None
            quality = result.quality.model_copy(
                update={
                    "nearest_sibling": other.path,
                    "sibling_distance": distance,
                    "near_duplicate": distance <= NEAR_DUPLICATE_BITS,
                }
            )
            updated[(result.input_index, result.variation)] = result.model_copy(
                update={"quality": quality}
            )
    return [updated.get((r.input_index, r.variation), r) for r in results]


def _nearest(hashes: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """For each row of hex hashes (all rows equally long, at least two rows): the smallest
    summed Hamming distance to any other row, and that row's index (the lowest on a tie)."""
    import numpy as np

    values = np.array([[int(h, 16) for h in row] for row in hashes], dtype=np.uint64)
    count, samples = values.shape
    worst = np.iinfo(np.uint16).max
    best = np.full(count, worst, dtype=np.uint16)
    best_at = np.zeros(count, dtype=np.int64)

    def offer(rows: slice, distances: np.ndarray, column_start: int) -> None:
        # Column blocks reach every row in increasing order: a later block wins only when
        # strictly nearer, and argmin takes the first minimum within a block.
        at = np.argmin(distances, axis=1)
        smallest = distances[np.arange(len(at)), at]
        nearer = smallest < best[rows]
        best[rows] = np.where(nearer, smallest, best[rows])
        best_at[rows] = np.where(nearer, at + column_start, best_at[rows])

    for start in range(0, count, SIBLING_BLOCK):
        rows = slice(start, min(start + SIBLING_BLOCK, count))
        for column_start in range(start, count, SIBLING_BLOCK):
            columns = slice(column_start, min(column_start + SIBLING_BLOCK, count))
            distances = np.zeros((rows.stop - start, columns.stop - column_start), np.uint16)
            for sample in range(samples):
                pairs = values[rows, sample, None] ^ values[None, columns, sample]
                distances += np.bitwise_count(pairs)
            if column_start == start:
                np.fill_diagonal(distances, worst)  # not its own sibling
            offer(rows, distances, column_start)
            if column_start != start:
                offer(columns, distances.T, start)
    return best, best_at


def summarize(qualities: Sequence[Quality]) -> QualitySummary | None:
    """Minimum and median of each figure over the measured outputs (None if none was)."""
    if not qualities:
        return None

    def figure(values: list[float]) -> FigureRange:
        return FigureRange(min=round(min(values), 4), median=round(statistics.median(values), 4))

    siblings = [q.sibling_distance for q in qualities if q.sibling_distance is not None]
    return QualitySummary(
        measured=len(qualities),
        ssim=figure([q.ssim for q in qualities]),
        psnr_db=figure([q.psnr_db for q in qualities]),
        phash_distance=figure([q.phash_distance for q in qualities]),
        sibling_distance=figure(siblings) if siblings else None,
        near_duplicates=sum(1 for q in qualities if q.near_duplicate),
    )
