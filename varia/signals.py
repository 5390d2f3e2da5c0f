"""One way to turn SIGTERM and SIGINT into an `asyncio.Event` (the CLI's server; the worker)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: asyncio.Event | None = None) -> Iterator[asyncio.Event]:
    """While inside, SIGTERM and SIGINT set the yielded event instead of ending the process.

    Install it before starting anything, so a signal that arrives early is never fatal;
    on exit the handlers are removed (the signals' default handling is back).
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
