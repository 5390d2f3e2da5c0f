"""varia's client layer: the one way the CLI, `watch`, the examples and the benchmarks talk to
Temporal about jobs.

- `jobs.Jobs`: connect once, then start (by the workflow type's name), status, list, cancel,
  drain, wait, heartbeats;
- `records`: what the client reports (`JobStatus`, `StopOutcome`), plain pydantic models;
- `status`: the one place a `JobStatus` is built; `closed`: what a closed job left;
- `pollers`: who polls a task queue; `errors`: RPC failures as varia's errors;
- `updates`: sending a drain, pause or resume (an update waits for a worker to take it);
- `connection`: `connect` with Temporal's client profile (workers use it too).

Nothing here imports worker-side code (workflows, activities, PyAV), and this package's
`__init__` imports nothing, so `varia --help` does not load the Temporal SDK.
"""
