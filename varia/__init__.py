"""varia: a durable video-variation renderer on Temporal and FFmpeg."""

__version__ = "0.1.0"
