"""The `varia` typer app: the group, its shared options, `--version`, and the entry point.

Commands live in `job_commands` (start, watch, status, cancel, drain, pause, resume, list),
`output_commands` (verify, sheet) and `process_commands` (worker, server, janitor, demo), one
small function each; importing `varia.cli` registers them. Each command reads its settings, asks
`varia.client.jobs.Jobs`, and hands the answer to `varia.cli.render` (or prints one JSON object
with `--json`); exit codes and the error mapping live in `varia.cli.exits`. Usage errors are
JSON too with `--json`.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from typing import Annotated

import typer
from typer import _click as click  # typer 0.29 vendors click

from varia.cli.exits import console, emit, say, wants_json
from varia.cli.help import NamedCommand, NamedGroup

app = typer.Typer(
    name="varia",
    cls=NamedGroup,
    help="Durable video-variation renderer on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
command = partial(app.command, cls=NamedCommand)

NEEDS = (
    "Needs a Temporal server (`varia server`, or TEMPORAL_ADDRESS / a TEMPORAL_PROFILE) and a "
    "worker polling the task queue (`varia worker`)."
)

JsonFlag = Annotated[
    bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout (for scripts).")
]
JobId = Annotated[
    str, typer.Argument(metavar="ID", help="The job (workflow) id.", show_default=False)
]
NoWait = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        metavar="",
        help=(
            "Do not wait until the job closed. A cancel is then only requested; a drain still "
            "waits for a worker to accept it (an update is delivered only to a worker)."
        ),
    ),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"varia {version('varia')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Durable video-variation renderer on Temporal."""


def _usage_error(err: click.exceptions.ClickException, as_json: bool) -> int:
    """A usage error: click's own message for people; with `--json`, the error object too."""
    from typer import rich_utils

    rich_utils.rich_format_error(err)
    if as_json:
        emit({"error": err.format_message(), "exit_code": err.exit_code})
    return int(err.exit_code)


def main() -> None:
    """Entry point of the `varia` console script.

    Ends with `os._exit` after flushing: the Temporal SDK's Rust threads may still touch the
    interpreter while it finalizes, which can abort a finished command at exit
    (temporalio/sdk-python#300).
    """
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as err:
        if err.format_message():  # rich help printed itself already
            err.show()
        code = 0
    except click.exceptions.ClickException as err:
        code = _usage_error(err, wants_json(sys.argv))
    except typer.Abort:
        say("aborted")
        code = 1
    except SystemExit as done:  # e.g. a closed pipe while printing
        code = done.code if isinstance(done.code, int) else 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
