"""The `varia` command line: `app` wires typer, `job_commands` / `output_commands` /
`process_commands` hold one small function per command, `render` draws output, `exits` maps
errors to exit codes, `watch` is the live view. Commands talk to Temporal only through
`varia.client.jobs.Jobs`."""

# importing the command modules registers their commands
from varia.cli import job_commands, output_commands, process_commands  # noqa: F401
from varia.cli.app import app, main

__all__ = ["app", "main"]
