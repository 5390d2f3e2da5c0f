"""The provenance record a render writes beside its output (`varia.output_record`): the manifest
still says exactly what FFmpeg ran, a render retried after its output was committed writes the
record again, and cleanup keeps the records out of the job directory and out of `removed`.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import av
import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.conftest import Clips
from tests.helpers import assert_manifest_matches_disk, read_manifest, render_task, run_job
from varia import media
from varia.activities import JobActivities, render_names
from varia.cleanup import clean_up_job
from varia.clips import make_clip
from varia.config import Settings
from varia.errors import OUTPUT_DIR_UNUSABLE
from varia.ffmpeg.argv import render_tag
from varia.jobdir import open_job_dir
from varia.models import CleanupRequest, MediaInfo, RenderResult
from varia.names import RECORD_PREFIX, record_name
from varia.output_record import is_brief, with_records
from varia.provenance import sha256_of
from varia.sheet import SHEET_NAME
from varia.worker import build_worker

JOB = "job-records"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    clip = make_clip(tmp_path_factory.mktemp("r") / "src.mp4", seconds=1, size="160x120")
    return media.probe(str(clip))


def logging_ffmpeg(directory: Path) -> tuple[Path, Path]:
    """The real FFmpeg behind a script that logs each argv it receives (one JSON line)."""
    log, script = directory / "argv.jsonl", directory / "ffmpeg-logged"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv) + '\\n')\n"
        f"os.execv({Settings().ffmpeg_path()!r}, [{shlex.quote(Settings().ffmpeg_path())!r}, "
        "*sys.argv[1:]])\n"
    )
    script.chmod(0o755)
    return script, log


async def test_manifest_argv_is_what_ffmpeg_received_across_runs(
    client: Client, settings: Settings, task_queue: str, clips: Clips, tmp_path: Path
) -> None:
    script, log = logging_ffmpeg(tmp_path)
    request = {"inputs": [str(clips.silent)], "variations": 4, "output_dir": str(tmp_path / "out"),
               "seed": 5, "concurrency": 2, "chunk_size": 2}  # fmt: skip
    async with build_worker(client, settings.model_copy(update={"ffmpeg": str(script)})):
        result = await run_job(client, task_queue, JOB, request)

    job_dir = Path(result.job_dir)
    manifest = assert_manifest_matches_disk(job_dir)
    received = [json.loads(line) for line in log.read_text().splitlines()]
    renders = {argv[-1]: argv for argv in received if "-progress" in argv}
    assert len(manifest["outputs"]) == 4 == len(renders)
    for output in manifest["outputs"]:
        temp = f"file:{job_dir / ('.' + output['path'] + '.part')}"
        assert output["argv"] == renders[temp]
        assert len(output["sha256"]) == 64 and output["quality"] and output["recipe"]
    assert not [p.name for p in job_dir.iterdir() if p.name.startswith(RECORD_PREFIX)]


async def test_a_render_retried_after_its_commit_writes_the_record_again(
    source: MediaInfo, tmp_path: Path
) -> None:
    render = JobActivities(Settings()).render
    task = render_task(source, tmp_path, seed=4)
    brief = await ActivityEnvironment().run(render, task)
    record = tmp_path / record_name(brief.path)
    assert is_brief(brief) and record.is_file()
    written = record.read_bytes()
    output_mtime = (tmp_path / brief.path).stat().st_mtime_ns

    record.unlink()  # the worker died after the output's commit, before its record
    again = await ActivityEnvironment().run(render, task)

    assert again == brief and record.read_bytes() == written
    assert (tmp_path / brief.path).stat().st_mtime_ns == output_mtime  # not rendered again
    (full,) = with_records(tmp_path, [again])
    assert full.argv and full.argv[-1].endswith(task.temp_name) and full.sha256


@pytest.mark.parametrize("planted", ["the input", "a sibling's output", "another job's output"])
async def test_a_file_planted_under_an_outputs_name_is_rendered_over_not_adopted(
    source: MediaInfo, tmp_path: Path, planted: str
) -> None:
    """A copy of the input put under a planned name while the job ran was taken for an earlier
    attempt's output: listed as a variation with a recipe and an argv that did not make it,
    SSIM 1.0 (found by a hostile review). Only a file tagged by this very argv is adopted."""
    render = JobActivities(Settings()).render
    task = render_task(source, tmp_path, seed=4, variation=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sibling = await ActivityEnvironment().run(render, render_task(source, tmp_path, variation=0))
    other_job = await ActivityEnvironment().run(
        render, render_task(source, elsewhere, seed=4, variation=1)
    )
    final = tmp_path / task.output_name
    copied = {
        "the input": Path(source.path),
        "a sibling's output": tmp_path / sibling.path,
        "another job's output": elsewhere / other_job.path,
    }[planted]
    final.write_bytes(copied.read_bytes())

    brief = await ActivityEnvironment().run(render, task)

    (full,) = with_records(tmp_path, [brief])
    assert full.sha256 == sha256_of(final) != sha256_of(copied)
    assert full.quality is not None and full.quality.ssim < 1.0
    with av.open(str(final)) as container:
        assert container.metadata["comment"] == render_tag(full.argv or [])


@pytest.mark.parametrize("slot", range(4), ids=["output", "scratch", "record", "record scratch"])
async def test_a_directory_at_a_name_a_render_writes_fails_it_at_once_untouched(
    source: MediaInfo, tmp_path: Path, slot: int
) -> None:
    """A directory made at `<output>` or `.<output>.part` failed the render five times as a raw
    `IsADirectoryError`, each after a whole FFmpeg run (found by a hostile review). Now the
    render fails first, not retried, naming it; FFmpeg (a path that does not exist here) never
    runs, and the directory keeps what it held."""
    task = render_task(source, tmp_path, seed=4)
    planted = tmp_path / render_names(task)[slot]
    planted.mkdir()
    (planted / "keep.txt").write_text("mine")
    render = JobActivities(Settings(VARIA_FFMPEG=str(tmp_path / "no-ffmpeg"))).render
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(render, task)
    assert refused.value.type == OUTPUT_DIR_UNUSABLE and refused.value.non_retryable
    assert repr(str(planted)) in refused.value.message and "did not make" in refused.value.message
    assert (planted / "keep.txt").read_text() == "mine"


async def test_cleanup_merges_kept_records_sweeps_the_others_and_survives_a_retry(
    source: MediaInfo, tmp_path: Path
) -> None:
    job_dir = open_job_dir(tmp_path, JOB)
    render = JobActivities(Settings()).render
    kept = await ActivityEnvironment().run(render, render_task(source, job_dir, variation=0))
    dropped = await ActivityEnvironment().run(render, render_task(source, job_dir, variation=1))
    (expected,) = with_records(job_dir, [kept])
    old_shape = RenderResult.model_validate(expected.model_dump())  # an older worker's result
    assert not is_brief(old_shape)
    request = CleanupRequest(
        job_id=JOB, job_dir=str(job_dir), state="cancelled", inputs=[source.path],
        stems=["src"], variations=2, seed=0, results=[kept], failed=0,
    )  # fmt: skip

    first = clean_up_job(request)
    assert read_manifest(job_dir)["removed"] == [dropped.path]  # not its record: varia's own
    assert first.removed == 1 and not (job_dir / dropped.path).exists()
    assert_manifest_matches_disk(job_dir)
    for attempt in (request, request.model_copy(update={"results": [old_shape]})):
        clean_up_job(attempt)  # a cleanup retried after it deleted the records; an old result
        manifest = assert_manifest_matches_disk(job_dir)  # nothing "removed" is still there
        assert manifest["removed"] == [dropped.path]  # the first attempt's, not the redrawn sheet
        assert [entry["path"] for entry in manifest["sheets"]] == [SHEET_NAME]
        (entry,) = manifest["outputs"]
        assert entry["argv"] == expected.argv and entry["sha256"] == expected.sha256
        assert expected.quality and entry["quality"]["phash"] == expected.quality.phash
        assert not [p.name for p in job_dir.iterdir() if p.name.startswith(RECORD_PREFIX)]


def test_a_record_is_read_only_from_a_regular_file_that_matches_its_output(
    tmp_path: Path,
) -> None:
    brief = RenderResult(input_index=0, variation=1, path="a_v001.mp4", bytes=10, duration_s=1.0)
    full = brief.model_copy(update={"sha256": "ab" * 32, "argv": ["ffmpeg"]})
    (tmp_path / record_name("a_v001.mp4")).write_text(full.model_dump_json())
    assert with_records(tmp_path, [brief]) == [full]

    moved = tmp_path / "elsewhere.json"
    (tmp_path / record_name("a_v001.mp4")).rename(moved)
    (tmp_path / record_name("a_v001.mp4")).symlink_to(moved)  # never followed
    assert with_records(tmp_path, [brief]) == [brief]

    (tmp_path / record_name("a_v001.mp4")).unlink()
    (tmp_path / record_name("a_v001.mp4")).mkdir()  # not a regular file
    assert with_records(tmp_path, [brief]) == [brief]

    other = brief.model_copy(update={"bytes": 11})  # a record of another output of that name
    (tmp_path / record_name("a_v001.mp4")).rmdir()
    (tmp_path / record_name("a_v001.mp4")).write_text(full.model_dump_json())
    assert with_records(tmp_path, [other]) == [other]

    (tmp_path / record_name("a_v001.mp4")).write_text("{not json")
    assert with_records(tmp_path, [brief]) == [brief]
