"""The client layer (`varia.client`) against the real dev server: one status for `status` and
`list`, the cancel/drain races and refusals (defects 4 and 5 of issue 9), Temporal's profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import start_by_name, wait_for
from varia.client.errors import Refused
from varia.client.jobs import Jobs
from varia.client.records import finished_percent
from varia.client.status import ClosedFacts, RunView, build_status
from varia.config import Settings, SettingsError, load_settings
from varia.models import Progress
from varia.percent import weighted_percent
from varia.search_attributes import VARIA_COMPLETED, VARIA_PERCENT, VARIA_TOTAL


async def test_status_and_list_agree_on_completed_and_failed_jobs(
    client: Client, worker: Worker, settings: Settings, clips: Clips, tmp_path: Path, job_id: str
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clips.short.read_bytes()[:4000])  # a bad input: the job fails
    out = tmp_path / "out"
    handle = await start_by_name(client, settings.task_queue, job_id, [clips.short], 2, out)
    await handle.result()
    jobs = Jobs(client, settings)
    failing = f"{job_id}-f"
    failed = await start_by_name(
        client, settings.task_queue, failing, [clips.short, broken], 1, out
    )
    with pytest.raises(WorkflowFailureError):
        await failed.result()
    for one in (job_id, failing):
        status = await jobs.status(one)
        [row] = [r for r in await jobs.list(limit=100) if r.job_id == one]
        fields = ("state", "total", "completed", "failed", "percent", "outputs", "job_dir")
        assert {f: getattr(row, f) for f in fields} == {f: getattr(status, f) for f in fields}
        assert row.manifest == status.manifest and status.manifest is not None
    failed_status = await jobs.status(failing)
    assert failed_status.state == "failed" and str(broken) in failed_status.errors[0]
    assert (await jobs.status(job_id)).percent == 100.0


def test_one_percent_formula_counts_failed_variations_as_finished() -> None:
    assert finished_percent(completed=3, failed=1, total=8) == 50.0
    assert finished_percent(completed=None, failed=None, total=None) is None


def _view(status: WorkflowExecutionStatus, **attributes: Any) -> RunView:
    keys = {"total": VARIA_TOTAL, "completed": VARIA_COMPLETED, "percent": VARIA_PERCENT}
    pairs = [SearchAttributePair(keys[name], value) for name, value in attributes.items()]
    return RunView("j", None, status, "q", None, None, TypedSearchAttributes(pairs))


@hypothesis_settings(deadline=None)  # a loaded CI machine is slow; no timing here
@given(
    total=st.integers(1, 500),
    done=st.integers(0, 500),
    fractions=st.lists(st.floats(0.0, 1.0), max_size=4),
)
def test_status_percent_is_the_jobs_weighted_percent_everywhere(
    total: int, done: int, fractions: list[float]
) -> None:
    done = min(done, total)
    fractions = fractions[: total - done]
    weighted = weighted_percent(total, done, fractions)
    running = WorkflowExecutionStatus.RUNNING
    live = Progress(
        job_id="j",
        state="running",
        total=total,
        completed=done,
        failed=0,
        running=len(fractions),
        percent=weighted,
    )
    # live: the query's answer; no worker: the VariaPercent the job upserted
    assert build_status(_view(running), ui_url="", progress=live).percent == weighted
    listed = _view(running, total=total, completed=done, percent=weighted)
    assert build_status(listed, ui_url="").percent == weighted
    # without VariaPercent (an older namespace) or closed: the same formula, finished only
    older = _view(running, total=total, completed=done)
    closed = _view(WorkflowExecutionStatus.CANCELED, total=total, completed=done, percent=weighted)
    for view in (older, closed):
        assert build_status(view, ui_url="").percent == weighted_percent(total, done, [])


@pytest.mark.parametrize(
    "closed_as", [WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.CANCELED]
)
def test_a_closed_jobs_percent_is_its_finished_variations_whatever_the_query_says(
    closed_as: WorkflowExecutionStatus,
) -> None:
    """A terminated job's `progress` query answers with the state it was terminated in (0 %,
    renders in flight) while the janitor's manifest counts 2 of 4 done: it showed `2/4 done
    (0%)`, a cancelled job 50 %."""
    frozen = Progress(
        job_id="j", state="running", total=4, completed=0, failed=0, running=2, percent=0.0
    )
    manifest = {"total": 4, "completed": 2, "failed": 0, "outputs": [{}, {}]}
    facts = ClosedFacts(varia_state=None, job_dir="/out/j", manifest=manifest, settled=False)
    view = _view(closed_as, total=4, completed=0, percent=0.0)
    status = build_status(view, ui_url="", progress=frozen, facts=facts)
    assert (status.completed, status.total, status.percent) == (2, 4, 50.0)


async def test_defect_4_drain_racing_completion_reports_the_closed_job(
    client: Client, worker: Worker, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    handle = await start_by_name(client, settings.task_queue, job_id, [clips.short], 1, out_dir)
    jobs = Jobs(client, settings)
    running = RunView.of(await handle.describe())
    assert not running.closed
    await handle.result()  # the job closes between the drain's describe and its update

    async def stale_describe(_: str) -> Any:
        return running_description

    running_description = _Described(running)
    jobs.describe = stale_describe  # type: ignore[method-assign]
    outcome = await jobs.drain(job_id)
    assert (outcome.already_closed, outcome.requested, outcome.state) == (True, False, "completed")
    assert outcome.kept == 1 and outcome.closed_at is not None


class _Described:
    """A description as describe() returned it while the job still ran."""

    def __init__(self, view: RunView) -> None:
        self.id, self.run_id, self.status = view.job_id, None, view.status
        self.task_queue, self.start_time, self.close_time = view.task_queue, view.started, None
        self.typed_search_attributes = view.attributes


async def test_defect_5_a_refused_cancel_is_an_error(
    client: Client,
    settings: Settings,
    clips: Clips,
    out_dir: Path,
    job_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handle = await start_by_name(client, settings.task_queue, job_id, [clips.short], 1, out_dir)

    async def refuse(self: WorkflowHandle[Any, Any], *args: object, **kwargs: object) -> None:
        raise RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")

    monkeypatch.setattr(WorkflowHandle, "cancel", refuse)
    with pytest.raises(Refused, match=r"Temporal refused the cancel of .*Request unauthorized"):
        await Jobs(client, settings).cancel(job_id, wait=False)
    await handle.terminate("test cleanup")


async def test_status_of_a_job_no_worker_polls_says_so(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    lonely = settings.model_copy(update={"task_queue": f"{settings.task_queue}-nobody"})
    handle = await start_by_name(client, lonely.task_queue, job_id, [clips.short], 1, out_dir)
    status = await Jobs(client, lonely).status(job_id)
    assert status.workers is False
    assert status.hint and "no worker polls task queue" in status.hint
    assert "varia worker" in status.hint
    await handle.terminate("test cleanup")
    closed = await wait_for(lambda: _closed_status(client, lonely, job_id), what="terminated")
    assert closed.hint is None and closed.state == "terminated"


async def _closed_status(client: Client, settings: Settings, job_id: str) -> Any:
    status = await Jobs(client, settings).status(job_id)
    return status if status.closed else None


def test_a_toml_profile_sets_address_namespace_and_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.default]\naddress = "here:7233"\n\n'
        '[profile.prod]\naddress = "prod.example:7233"\nnamespace = "prod-ns"\n'
        'api_key = "secret"\n[profile.prod.tls]\nserver_name = "prod.example"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().temporal_address == "here:7233"

    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    settings = load_settings()
    assert (settings.temporal_address, settings.temporal_namespace) == (
        "prod.example:7233",
        "prod-ns",
    )
    connect = settings.connect_config()
    assert connect["api_key"] == "secret"
    assert getattr(connect["tls"], "domain", None) == "prod.example"

    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-env")  # the standard variables win
    monkeypatch.setenv("TEMPORAL_TLS_CA", str(ca))  # deprecated alias, still honoured
    settings = load_settings()
    assert settings.temporal_namespace == "from-env" and settings.tls_ca == ca
    tls = settings.connect_config()["tls"]
    assert getattr(tls, "server_root_ca_cert", None) == ca.read_bytes()

    monkeypatch.setenv("TEMPORAL_PROFILE", "missing")
    with pytest.raises(SettingsError, match="TEMPORAL_PROFILE='missing'"):
        load_settings()
