"""The FFmpeg layer: a pure argv builder, a pure `-progress` parser and process control."""
