"""The `varia` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from varia.config import Settings, SettingsError, load_settings, settings_help

app = typer.Typer(
    name="varia",
    help="Durable video-variation renderer on Temporal.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as err:
        err_console.print(f"varia: {err}")
        raise typer.Exit(2) from None


@app.command(epilog=settings_help())
def worker() -> None:
    """Run a worker (SIGTERM/SIGINT stop it gracefully; renders in flight retry elsewhere)."""
    from varia.logs import configure_logging
    from varia.worker import run_worker

    settings = _settings()
    configure_logging(settings)
    try:
        asyncio.run(run_worker(settings))
    except SettingsError as err:
        err_console.print(f"varia: {err}", markup=False)
        raise typer.Exit(2) from None


@app.command()
def server(
    port: Annotated[int, typer.Option(help="gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Web UI port.")] = 8233,
    ip: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    db: Annotated[Path | None, typer.Option(help="SQLite file (default: user data dir).")] = None,
) -> None:
    """Run the embedded Temporal dev server with varia's search attributes registered."""
    from varia.server import DevServer, default_db_path

    async def serve() -> None:
        dev = DevServer(host=ip, port=port, ui_port=ui_port, db_path=db or default_db_path())
        async with dev:
            console.print(f"Temporal at {dev.address}, Web UI at {dev.ui_url}; Ctrl-C stops it")
            assert dev.process is not None
            await asyncio.to_thread(dev.process.wait)

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def demo(
    variations: Annotated[int, typer.Option("-n", "--variations", min=1, max=20)] = 3,
    seconds: Annotated[float, typer.Option(help="Length of the test clip.")] = 4.0,
    out: Annotated[Path | None, typer.Option(help="Where to keep the clip and outputs.")] = None,
) -> None:
    """Run everything on this machine: server, worker, a test clip and a job."""
    from varia.demo import run_demo

    try:
        code = asyncio.run(run_demo(console, variations=variations, seconds=seconds, keep_dir=out))
    except KeyboardInterrupt:
        err_console.print("interrupted: everything the demo started was stopped")
        code = 130
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `varia` console script."""
    app()
