"""The dev server's command line: what each `DevServer` option adds (no server started)."""

from __future__ import annotations

from varia.server import DevServer


def test_metrics_are_served_only_where_asked() -> None:
    assert "--metrics-port" not in DevServer(port=7233, ui_port=8233).argv()
    argv = DevServer(port=7233, ui_port=8233, metrics_port=9123).argv()
    assert argv[argv.index("--metrics-port") + 1] == "9123"
