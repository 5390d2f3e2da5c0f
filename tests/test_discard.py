"""The pause's discard of partial files: only the job's temporary render files go."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from varia.jobdir import ConfinementError, discard_partials, open_job_dir

names = st.one_of(
    st.from_regex(r"\.[a-z]{1,8}_v[0-9]{3}\.mp4\.part", fullmatch=True),
    st.from_regex(r"[a-z.]{1,12}", fullmatch=True),
    st.sampled_from(["../x.part", ".", "..", "sub/.a.part", ".varia-job", "manifest.json"]),
)


@hypothesis_settings(deadline=None)  # a loaded CI machine is slow; no timing here
@given(asked=st.lists(names, max_size=8), present=st.lists(names, max_size=8))
def test_only_temporary_render_files_named_are_deleted(
    asked: list[str], present: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        job_dir = open_job_dir(Path(tmp), "job-1")
        made = set()
        for name in present:
            path = job_dir / name
            if "/" in name or name in (".", "..") or path.exists():
                continue
            path.write_bytes(b"x")
            made.add(name)
        (job_dir / ".link.mp4.part").symlink_to(job_dir / ".varia-job")
        before = {p.name for p in job_dir.iterdir()}
        removed = discard_partials(job_dir, "job-1", asked)
        after = {p.name for p in job_dir.iterdir()}
        assert set(removed) == before - after
        for name in removed:
            assert name in asked and name.startswith(".") and name.endswith(".part")
        assert ".varia-job" in after and ".link.mp4.part" in after


def test_a_directory_of_another_job_is_refused(tmp_path: Path) -> None:
    job_dir = open_job_dir(tmp_path, "job-1")
    (job_dir / ".a_v000.mp4.part").write_bytes(b"x")
    with pytest.raises(ConfinementError, match="marker does not name job 'job-2'"):
        discard_partials(job_dir, "job-2", [".a_v000.mp4.part"])
    assert (job_dir / ".a_v000.mp4.part").exists()
