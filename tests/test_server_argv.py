"""The dev server's command line and environment: what each `DevServer` option adds (no server
started)."""

from __future__ import annotations

import pytest

from varia.server import GO_PROCS, DevServer, server_environment


def test_metrics_are_served_only_where_asked() -> None:
    assert "--metrics-port" not in DevServer(port=7233, ui_port=8233).argv()
    argv = DevServer(port=7233, ui_port=8233, metrics_port=9123).argv()
    assert argv[argv.index("--metrics-port") + 1] == "9123"


def test_the_server_runs_go_on_one_core_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.setenv("VARIA_PROBE_VARIABLE", "kept")
    env = server_environment(DevServer().go_procs)
    assert env["GOMAXPROCS"] == str(GO_PROCS) == "1"
    assert env["VARIA_PROBE_VARIABLE"] == "kept"  # the rest of our environment is passed on
    assert "GOMAXPROCS" not in server_environment(None)  # Go's own default
    monkeypatch.setenv("GOMAXPROCS", "2")  # an operator's explicit choice wins
    assert server_environment(GO_PROCS)["GOMAXPROCS"] == "2"
