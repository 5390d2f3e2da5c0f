"""A job's cleanup: delete what is not in the completion record, draw the contact sheets, write
the manifest. A plain function: the cleanup activity (registered as `varia.finish`) runs it in a
thread, and the janitor runs it for a job that closed without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from temporalio import activity

from varia import errors, jobdir, ledger, names, output_record, sheet
from varia.models import (
    MAX_CONCURRENCY,
    CleanupRequest,
    JobResult,
    Manifest,
    OutputEntry,
    QualitySummary,
    RenderResult,
)
from varia.names import MANIFEST_NAME
from varia.recipes import make_recipe, output_name
from varia.verify import file_problem

log = logging.getLogger("varia.activities")


def clean_up_job(request: CleanupRequest) -> JobResult:
    """Delete what is not kept, complete the results from their records, add nearest
    siblings, draw the contact sheets, write the manifest, delete the records it holds."""
    job_dir = Path(request.job_dir)
    results = {(r.input_index, r.variation): r for r in request.results}
    try:
        jobdir.check_owner(job_dir, request.job_id, request.chain, "clean")
        previous = jobdir.earlier_manifest(job_dir)  # a retry's: what the first attempt removed
        if request.use_ledger:
            for earlier in ledger.read_ledger(job_dir):
                results.setdefault((earlier.input_index, earlier.variation), earlier)
        for earlier in _still_listed(job_dir, previous, request):
            results.setdefault((earlier.input_index, earlier.variation), earlier)
        keep = {result.path for result in results.values()}
        owned = jobdir.owned_names(request.stems, request.variations)
        finals = [name for name in owned if not name.startswith(".")]
        scratch = (
            {sheet.cell_name(name) for name in finals}
            | output_record.record_names(finals)
            | {names.slot_lock_name(slot) for slot in range(MAX_CONCURRENCY)}
            | {names.slot_turn_name(slot) for slot in range(MAX_CONCURRENCY)}
        )
        sheets_planned = sheet.planned_names(request.stems)  # an earlier run's sheet is redrawn
        owned |= sheets_planned | {names.atomic_temp_name(n) for n in sheets_planned} | scratch
        kept_cells = {sheet.cell_name(name) for name in keep}
        kept_records = {names.record_name(name) for name in keep}
        removed, foreign = jobdir.sweep(
            job_dir, request.job_id, keep | kept_cells | kept_records, owned, request.chain
        )
    except jobdir.ConfinementError as err:
        raise errors.confinement_failure(err) from None
    except ledger.LedgerCorrupt as err:
        raise errors.ledger_corrupt(err) from None
    removed = [name for name in removed if name not in scratch]  # varia's, not the job's
    if previous is not None:
        removed = sorted({*removed, *previous.removed})
    ordered = output_record.with_records(
        job_dir, sorted(results.values(), key=lambda r: (r.input_index, r.variation))
    )
    if any(result.quality is not None for result in ordered):
        from varia.quality import with_siblings

        ordered = with_siblings(ordered)
    outputs = [_output_entry(request, result) for result in ordered]
    sheets, problems = sheet.write_sheets(
        job_dir, request.inputs, request.stems, outputs, taken=set(foreign)
    )
    removed = [name for name in removed if not os.path.lexists(job_dir / name)]  # redrawn
    for name in kept_cells:  # drawn: the saved frames are no longer needed
        if name not in foreign:  # a link planted at a cell's name is not the job's to delete
            with contextlib.suppress(FileNotFoundError):
                (job_dir / name).unlink()
    foreign = [name for name in foreign if name != MANIFEST_NAME]  # always written, below
    manifest = Manifest(
        job_id=request.job_id,
        state=request.state,
        run_id=_run_id(request),
        seed=request.seed,
        total=len(request.inputs) * request.variations,
        completed=len(outputs),
        failed=request.failed,
        outputs=outputs,
        removed=removed,
        foreign=foreign,
        errors=[*request.errors, *problems],
        sheets=sheets,
        quality=_summary(outputs),
    )
    try:
        path = jobdir.write_manifest(job_dir, manifest)
    except jobdir.NameTaken as err:  # a directory at its name: not retried, said plainly
        raise errors.confinement_failure(err) from None
    for name in kept_records:  # in the manifest now (a retry reads them back from there)
        with contextlib.suppress(FileNotFoundError):
            (job_dir / name).unlink()
    if foreign:
        log.warning("job %s: left foreign entries alone: %s", request.job_id, foreign)
    return JobResult(
        job_id=request.job_id,
        state=request.state,
        job_dir=str(job_dir),
        manifest=str(path),
        total=manifest.total,
        completed=manifest.completed,
        failed=manifest.failed,
        removed=len(removed),
        seed=request.seed,
        sheet=str(job_dir / sheets[0].path) if sheets else None,
        sheets=[str(job_dir / entry.path) for entry in sheets],
        quality=manifest.quality,
    )


def _run_id(request: CleanupRequest) -> str | None:
    """The run the manifest is written for: the request's (the janitor names the run it
    sweeps), else the run of the cleanup activity calling (the workflow's own cleanup)."""
    if request.run_id is not None or not activity.in_activity():
        return request.run_id
    return activity.info().workflow_run_id or None


def _still_listed(
    job_dir: Path, previous: Manifest | None, request: CleanupRequest
) -> list[OutputEntry]:
    """The outputs an earlier manifest of this chain lists that are still the files it lists.

    A reset starts a run of the same chain that knows none of them: drained or cancelled
    before its renders adopt them, it would otherwise delete what the chain had finished. An
    entry counts only under the name the job plans for its variation, as a regular file of the
    recorded size and SHA-256 (a changed file is not vouched for, and is swept as before).
    """
    if previous is None:
        return []
    planned = {
        (index, variation): output_name(stem, variation, request.variations)
        for index, stem in enumerate(request.stems)
        for variation in range(request.variations)
    }
    return [
        entry
        for entry in previous.outputs
        if planned.get((entry.input_index, entry.variation)) == entry.path
        and file_problem(job_dir / entry.path, entry.path, entry.bytes, entry.sha256) is None
    ]


def _output_entry(request: CleanupRequest, result: RenderResult) -> OutputEntry:
    recipe = result.recipe or make_recipe(request.seed, result.input_index, result.variation)
    return OutputEntry.of(result, request.inputs[result.input_index], recipe)


def _summary(outputs: list[OutputEntry]) -> QualitySummary | None:
    measured = [entry.quality for entry in outputs if entry.quality is not None]
    if not measured:
        return None
    from varia.quality import summarize

    return summarize(measured)
