"""A job's render slots (`varia.job_slots`): one FFmpeg per slot at a time, in the order the
workflow scheduled them, within one process and across processes. No server needed."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import wait_for
from varia import names
from varia.job_slots import JobSlots, _try_flock
from varia.jobdir import JobDirGone

Release = Callable[[], None]


async def _pending(task: asyncio.Task[Release]) -> bool:
    """Whether `task` is still waiting after the loop had every chance to run it."""
    for _ in range(20):
        await asyncio.sleep(0)
    return not task.done()


def _holder(lock: Path) -> subprocess.Popen[bytes]:
    """Another process that holds `lock`'s flock until its stdin closes."""
    code = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    return proc


def _let_go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


async def test_a_slot_is_held_by_one_render_at_a_time(tmp_path: Path) -> None:
    slots = JobSlots()
    first = slots.try_acquire(tmp_path, 0, 0, None)
    assert first is not None
    assert slots.try_acquire(tmp_path, 0, 1, None) is None
    second = asyncio.create_task(slots.acquire(tmp_path, 0, 1, None))
    assert await _pending(second)
    other_slot = slots.try_acquire(tmp_path, 1, 2, None)
    assert other_slot is not None, "another slot of the same job is free"
    first()
    (await second)()
    other_slot()
    assert len(slots) == 0, "nothing is kept once every render let go"


async def test_the_next_render_waits_for_its_predecessors_turn_even_on_a_free_slot(
    tmp_path: Path,
) -> None:
    """The render scheduled behind another does not overtake it, even if it arrives first."""
    slots = JobSlots()
    behind = asyncio.create_task(slots.acquire(tmp_path, 0, 5, follows=3))
    assert await _pending(behind), "the slot is free, but render 3 has not had its turn"
    assert slots.try_acquire(tmp_path, 0, 5, follows=3) is None
    first = slots.try_acquire(tmp_path, 0, 3, follows=None)
    assert first is not None
    assert await _pending(behind)
    first()
    (await behind)()
    assert len(slots) == 0


async def test_an_attempt_that_ends_without_ffmpeg_ends_its_turn(tmp_path: Path) -> None:
    slots = JobSlots()
    behind = asyncio.create_task(slots.acquire(tmp_path, 0, 1, follows=0))
    assert await _pending(behind)
    slots.end_turn(tmp_path, 0, 0)  # render 0 failed before its FFmpeg, or was already there
    (await behind)()
    slots.end_turn(tmp_path, 0, 0)  # again: idempotent
    assert (tmp_path / names.slot_turn_name(0)).read_text() == "1\n"


async def test_a_cancelled_wait_holds_nothing(tmp_path: Path) -> None:
    slots = JobSlots()
    first = slots.try_acquire(tmp_path, 0, 0, None)
    assert first is not None
    waiting = asyncio.create_task(slots.acquire(tmp_path, 0, 1, None))
    assert await _pending(waiting)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    first()
    again = slots.try_acquire(tmp_path, 0, 2, None)
    assert again is not None, "the cancelled waiter took nothing"
    again()
    assert len(slots) == 0


async def test_a_slot_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    lock = tmp_path / names.slot_lock_name(0)
    holder = _holder(lock)
    try:
        slots = JobSlots()
        assert slots.try_acquire(tmp_path, 0, 0, None) is None
        waiting = asyncio.create_task(slots.acquire(tmp_path, 0, 0, None))
        assert await _pending(waiting)
    finally:
        _let_go(holder)
    release = await asyncio.wait_for(waiting, 30)
    assert _try_flock(str(lock)) is None, "the waiter holds the flock now"
    release()
    fd = _try_flock(str(lock))
    assert fd is not None


async def test_a_wait_cancelled_while_another_process_holds_the_slot_leaves_it_free(
    tmp_path: Path,
) -> None:
    """The waiting thread cannot be interrupted: it gives the lock back once it gets it."""
    lock = tmp_path / names.slot_lock_name(0)
    holder = _holder(lock)
    slots = JobSlots()
    waiting = asyncio.create_task(slots.acquire(tmp_path, 0, 0, None))
    try:
        assert await _pending(waiting)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        _let_go(holder)

    def free() -> bool | None:
        release = slots.try_acquire(tmp_path, 0, 1, None)
        if release is not None:
            release()
        return release is not None or None

    await wait_for(free, what="the abandoned wait's thread to give the slot back")


async def test_a_turn_ended_in_another_process_is_seen(tmp_path: Path) -> None:
    slots = JobSlots()
    waiting = asyncio.create_task(slots.acquire(tmp_path, 0, 1, follows=0))
    assert await _pending(waiting)
    code = (
        "from pathlib import Path\nfrom varia.job_slots import JobSlots\n"
        f"JobSlots().end_turn(Path({str(tmp_path)!r}), 0, 0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    (await asyncio.wait_for(waiting, 30))()


@settings(max_examples=40, deadline=None)
@given(
    arrivals=st.permutations(range(6)),
    early_ends=st.sets(st.integers(0, 5), max_size=2),
    slots_used=st.integers(1, 3),
)
def test_property_one_ffmpeg_per_slot_in_scheduled_order(
    tmp_path_factory: pytest.TempPathFactory,
    arrivals: list[int],
    early_ends: set[int],
    slots_used: int,
) -> None:
    """Renders 0..5 spread over `slots_used` slots, each following the one before it in its
    slot, arrive in any order; some end without FFmpeg. In every slot at most one holds the
    slot at a time, each holds it once, and in the order they were scheduled."""
    job_dir = tmp_path_factory.mktemp("job")
    orders = range(6)
    slot_of = {order: order % slots_used for order in orders}
    follows = {order: (order - slots_used if order >= slots_used else None) for order in orders}

    async def scenario() -> dict[int, list[int]]:
        slots = JobSlots()
        holding: dict[int, int | None] = {slot: None for slot in range(slots_used)}
        held_in_order: dict[int, list[int]] = {slot: [] for slot in range(slots_used)}

        async def render(order: int) -> None:
            slot = slot_of[order]
            if order in early_ends:  # e.g. its output was already there: no FFmpeg
                slots.end_turn(job_dir, slot, order)
                return
            release = await slots.acquire(job_dir, slot, order, follows[order])
            assert holding[slot] is None, f"{order} and {holding[slot]} hold slot {slot}"
            holding[slot] = order
            held_in_order[slot].append(order)
            for _ in range(3):
                await asyncio.sleep(0)  # let the others try meanwhile
            holding[slot] = None
            release()

        tasks = []
        for order in arrivals:
            tasks.append(asyncio.create_task(render(order)))
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert len(slots) == 0
        return held_in_order

    held = asyncio.run(scenario())
    for slot, sequence in held.items():
        expected = [o for o in orders if slot_of[o] == slot and o not in early_ends]
        assert sorted(sequence) == expected, f"slot {slot}: every render had its turn once"
        if not early_ends:  # (a turn ended early lets the one after it go ahead of older ones)
            assert sequence == expected, f"slot {slot}: in the order scheduled"


async def test_a_turn_the_disk_refused_is_written_once_it_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A render that ends while its turn cannot be written (full or read-only disk) leaves
    the render queued behind it waiting; once the disk takes the write, that one goes on
    (it waited forever, found by review)."""
    from varia import job_slots

    disk_full = True
    refused = 0
    real = job_slots._raise_turn

    def refusing(path: str, order: int) -> None:
        nonlocal refused
        if disk_full:
            refused += 1
            raise OSError(30, "Read-only file system")
        real(path, order)

    monkeypatch.setattr(job_slots, "_raise_turn", refusing)
    monkeypatch.setattr(job_slots, "TURN_RETRY_S", 0.01)
    slots = JobSlots()
    first = slots.try_acquire(tmp_path, 0, 0, None)
    assert first is not None
    behind = asyncio.create_task(slots.acquire(tmp_path, 0, 1, 0))
    first()  # its turn ends, but the disk refuses the write
    await wait_for(lambda: refused >= 3 or None, what="the retries to be refused too")
    assert await _pending(behind)
    disk_full = False
    release = await wait_for(lambda: behind.result() if behind.done() else None, what="turn")
    release()
    assert len(slots) == 0


async def test_a_render_waiting_for_its_turn_fails_once_the_job_directory_is_deleted(
    tmp_path: Path,
) -> None:
    """`rm -rf` of the job directory while render 0 holds the slot and render 1 waits for its
    turn: render 0's turn can no longer be written, so render 1 waited forever (found by
    review); it fails, naming the directory, and holds nothing."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    slots = JobSlots()
    first = slots.try_acquire(job_dir, 0, 0, None)
    assert first is not None
    behind = asyncio.create_task(slots.acquire(job_dir, 0, 1, follows=0))
    assert await _pending(behind)
    shutil.rmtree(job_dir)
    first()  # its turn ends, but there is no directory to record it in
    with pytest.raises(JobDirGone, match=f"{re.escape(repr(str(job_dir)))} was deleted"):
        await asyncio.wait_for(behind, 10)
    assert len(slots) == 0
    assert not job_dir.exists(), "nothing made again"


@pytest.mark.parametrize("ahead", ["holding the slot here", "in another process"])
async def test_a_waiter_notices_the_deletion_while_no_turn_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: str
) -> None:
    """The render ahead still runs (here: only the poll every `TURN_RETRY_S` can tell), or is
    in another process (the turn is polled every `TURN_POLL_S`): either way the waiter fails."""
    from varia import job_slots

    monkeypatch.setattr(job_slots, "TURN_RETRY_S", 0.05)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    slots = JobSlots()
    first = slots.try_acquire(job_dir, 0, 0, None) if ahead == "holding the slot here" else None
    behind = asyncio.create_task(slots.acquire(job_dir, 0, 1, follows=0))
    assert await _pending(behind)
    shutil.rmtree(job_dir)
    with pytest.raises(JobDirGone, match="was deleted while the job ran"):
        await asyncio.wait_for(behind, 10)
    if first is not None:
        first()
    assert len(slots) == 0


async def test_a_wait_for_a_lock_another_process_holds_ends_when_the_job_directory_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other process's render may be frozen: the waiter does not wait for it to let go of
    a lock in a directory that is gone; the thread gives the lock back once it gets it."""
    from varia import job_slots

    monkeypatch.setattr(job_slots, "TURN_RETRY_S", 0.05)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    holder = _holder(job_dir / names.slot_lock_name(0))
    slots = JobSlots()
    try:
        waiting = asyncio.create_task(slots.acquire(job_dir, 0, 0, None))
        assert await _pending(waiting)
        shutil.rmtree(job_dir)
        with pytest.raises(JobDirGone, match="was deleted while the job ran"):
            await asyncio.wait_for(waiting, 10)
    finally:
        _let_go(holder)
    assert len(slots) == 0
    assert not job_dir.exists()
