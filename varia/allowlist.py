"""What varia reads: the container formats and the protocol an input may use (pure constants).

The probe (`varia.demux`) and the render argv (`varia.ffmpeg.argv`) both enforce them.
"""

from __future__ import annotations

ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",  # mov,mp4,m4a,3gp,3g2,mj2
    "matroska",  # matroska,webm
    "avi",
    "mpegts",
    "mpeg",  # MPEG program stream (.mpg, .vob)
    "flv",
    "ogg",
    "asf",  # asf, wmv
)
"""FFmpeg demuxers of single-file containers varia reads: none opens another file or URL."""

PROTOCOL_WHITELIST = "file"
"""The only protocol FFmpeg may use for an input, when probing and when rendering."""


def demuxer_allowed(format_name: str) -> bool:
    """True if a PyAV `container.format.name` (comma-separated aliases) is on the allow-list."""
    return any(name in ALLOWED_DEMUXERS for name in format_name.split(","))
