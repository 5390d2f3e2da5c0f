"""varia's benchmarks: orchestration overhead, cancel and start latency, throughput, scale,
validation cost and FFmpeg niceness. Run with `python -m benchmarks [--quick]` (never part of
`make test`); figures print as tables and land in `benchmarks/results/` as JSON and PNG."""
