"""The `varia` command line: `app` wires typer, `job_commands` / `process_commands` hold one
small function per command, `render` draws output, `exits` maps errors to exit codes, `watch`
is the live view. Commands talk to Temporal only through `varia.client.jobs.Jobs`."""

from varia.cli import job_commands, process_commands  # noqa: F401  (registers the commands)
from varia.cli.app import app, main

__all__ = ["app", "main"]
