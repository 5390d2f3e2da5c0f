"""Exit codes, the one-JSON-object rule and the mapping of varia's errors to both.

Exit codes: 0 ok, 1 the job failed or was cancelled (or Temporal refused a request), 2 usage
error or bad setting (a namespace the server does not have included), 3 job not found, 4 server
unreachable, 130 stopped watching with Ctrl-C (the job runs on). With `--json` every command
prints exactly one JSON object on stdout (errors too: `{"error": …, "exit_code": …}`);
messages for people go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from varia.config import Settings, SettingsError, load_settings
from varia.validation import RequestError

T = TypeVar("T")

PIPE_WIDTH = 10_000
"""Columns of output that is not a terminal (a pipe, a file, a CI log): tables take their natural
width, so links, ids, paths and dates are never cut or wrapped (rich would use 80, or
`COLUMNS`)."""


def _console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps only on a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


console = _console()
err_console = _console(stderr=True)


class Exit(IntEnum):
    """The documented exit codes."""

    OK = 0
    JOB_UNSUCCESSFUL = 1
    USAGE = 2
    NOT_FOUND = 3
    UNREACHABLE = 4
    INTERRUPTED = 130


def emit(payload: dict[str, Any]) -> None:
    """Write the one JSON object of a `--json` command to stdout."""
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """One plain line for a person on stderr."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def fail(code: Exit, message: str, as_json: bool) -> NoReturn:
    """Print one clear line (and the JSON error object with `--json`), then exit."""
    say(f"varia: {message}")
    if as_json:
        emit({"error": message, "exit_code": int(code)})
    raise typer.Exit(int(code))


def settings_or_exit(as_json: bool = False) -> Settings:
    """The settings, or exit 2 naming the bad variable."""
    try:
        return load_settings()
    except SettingsError as err:
        fail(Exit.USAGE, str(err), as_json)


def run(as_json: bool, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work`, mapping varia's errors to their exit codes and one line each."""
    from temporalio.service import RPCError

    from varia.client.errors import (
        JobNotFound,
        NamespaceNotFound,
        NotPausable,
        Refused,
        ServerUnreachable,
    )

    try:
        return asyncio.run(work())
    except ServerUnreachable as err:
        fail(Exit.UNREACHABLE, str(err), as_json)
    except JobNotFound as err:
        fail(Exit.NOT_FOUND, str(err), as_json)
    except (RequestError, SettingsError, NotPausable, NamespaceNotFound) as err:
        fail(Exit.USAGE, str(err), as_json)
    except Refused as err:
        fail(Exit.JOB_UNSUCCESSFUL, str(err), as_json)
    except RPCError as err:
        fail(Exit.JOB_UNSUCCESSFUL, f"Temporal said: {err.message}", as_json)


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asked for JSON (read before typer parsed it)."""
    return "--json" in argv[1:]
