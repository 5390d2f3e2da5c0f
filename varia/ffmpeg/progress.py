"""Pure parser of FFmpeg's `-progress` output (`key=value` lines, a block per report).

Feed it bytes as they arrive, in pieces of any size; it yields one `ProgressReport` per block,
when the block's closing `progress=continue|end` line is complete. `N/A` values and torn lines
are handled; unknown keys are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressReport:
    """One block of FFmpeg progress."""

    frame: int | None = None
    fps: float | None = None
    out_time_s: float | None = None
    total_size: int | None = None
    speed: float | None = None
    ended: bool = False

    def percent(self, expected_duration_s: float) -> float:
        """How far the encode is, 0..100, against the duration the output should have."""
        if self.ended:
            return 100.0
        if not self.out_time_s or expected_duration_s <= 0:
            return 0.0
        return max(0.0, min(100.0, 100.0 * self.out_time_s / expected_duration_s))

    def eta_s(self, expected_duration_s: float) -> float | None:
        """Seconds left at the current speed, if FFmpeg reports one."""
        if self.ended:
            return 0.0
        if not self.speed or self.out_time_s is None or expected_duration_s <= 0:
            return None
        return max(0.0, (expected_duration_s - self.out_time_s) / self.speed)


def _number(text: str) -> float | None:
    text = text.strip().rstrip("x").strip()
    if not text or text == "N/A":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _integer(text: str) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


class ProgressParser:
    """Incremental parser: `feed(chunk)` yields the reports completed by that chunk."""

    def __init__(self) -> None:
        self._partial = b""
        self._fields: dict[str, str] = {}

    def feed(self, chunk: bytes) -> Iterator[ProgressReport]:
        """Consume a chunk of stdout; yield every report whose block it completes."""
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            report = self._line(raw.decode("utf-8", "replace").strip())
            if report is not None:
                yield report

    def _line(self, line: str) -> ProgressReport | None:
        key, sep, value = line.partition("=")
        if not sep:
            return None
        key = key.strip()
        if key != "progress":
            self._fields[key] = value.strip()
            return None
        report = self._report(ended=value.strip() == "end")
        self._fields = {}
        return report

    def _report(self, ended: bool) -> ProgressReport:
        fields = self._fields
        out_time_us = _number(fields.get("out_time_us", ""))
        if out_time_us is None:
            out_time_us = _number(fields.get("out_time_ms", ""))  # also µs, despite its name
        return ProgressReport(
            frame=_integer(fields.get("frame", "")),
            fps=_number(fields.get("fps", "")),
            out_time_s=None if out_time_us is None else out_time_us / 1_000_000,
            total_size=_integer(fields.get("total_size", "")),
            speed=_number(fields.get("speed", "")),
            ended=ended,
        )
