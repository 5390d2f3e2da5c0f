"""varia's client layer: the one way the CLI, `watch`, the examples and the benchmarks talk to
Temporal about jobs (`varia.client.jobs.Jobs`), plus `connect` for workers.

Nothing here imports worker-side code (workflows, activities, PyAV): jobs are started by the
workflow type's name, so a client starts quickly.
"""

from varia.client.connection import connect

__all__ = ["connect"]
