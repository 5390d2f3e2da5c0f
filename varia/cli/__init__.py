"""The `varia` command line: `app` wires typer, `render` draws output, `exits` maps errors
to exit codes, `watch` is the live view. Commands talk to Temporal only through
`varia.client.jobs.Jobs`."""

from varia.cli.app import app, main

__all__ = ["app", "main"]
