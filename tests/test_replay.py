"""Every recorded history of `VariationJob` replays against today's workflow code.

A worker upgraded mid-job replays the running job's history with the new code; a change to
the commands the workflow issues for an existing history fails here, naming the history file.
See the README's "Changing the workflow safely". No server needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.histories import PATHS, history_files, path_of, workflow_id
from varia.workflows import VariationJob


@pytest.mark.parametrize("history_file", history_files(), ids=lambda path: path.name)
async def test_recorded_history_replays(history_file: Path) -> None:
    history = WorkflowHistory.from_json(
        workflow_id(path_of(history_file)), json.loads(history_file.read_text())
    )
    replayer = Replayer(workflows=[VariationJob], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        pytest.fail(
            f"{history_file.name} no longer replays with the current VariationJob (gate the "
            f"change with workflow.patched, see the README): {result.replay_failure}",
            pytrace=False,
        )


def test_every_path_has_a_recorded_history() -> None:
    recorded = {path_of(f) for f in history_files()}
    assert recorded >= set(PATHS), f"no recorded history for {sorted(set(PATHS) - recorded)}"
    assert recorded <= set(PATHS), f"histories of unknown paths: {sorted(recorded - set(PATHS))}"
    chain = sorted(f.name for f in history_files() if path_of(f) == "continue-as-new")
    assert len(chain) >= 2, f"continue-as-new needs a first and a continued run: {chain}"
