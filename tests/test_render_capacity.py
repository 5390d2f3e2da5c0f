"""A worker's render capacity (`varia.render_capacity`): the render queue takes a render exactly
while fewer than the cap are active; parked renders and renders in their tail leave room, and
FFmpeg itself never runs more than the cap. No server needed."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from varia.render_capacity import RenderCapacity

CTX: Any = None  # the supplier reads nothing of its contexts


async def _still_waiting(task: asyncio.Future[Any]) -> bool:
    for _ in range(20):
        await asyncio.sleep(0)
    return not task.done()


async def test_the_supplier_waits_for_room_and_parked_or_tail_renders_make_it() -> None:
    capacity = RenderCapacity(2)
    supplier = capacity.supplier()
    await supplier.reserve_slot(CTX)
    await supplier.reserve_slot(CTX)
    assert supplier.try_reserve_slot(CTX) is None
    third = asyncio.ensure_future(supplier.reserve_slot(CTX))
    assert await _still_waiting(third)

    async def park_one() -> None:
        with capacity.render(counted=True):
            async with capacity.parked_while():
                await third  # parked: the third slot may be handed out meanwhile

    await park_one()
    assert capacity.reserved == 3 and capacity.active == 3  # the parked one is active again
    supplier.release_slot(CTX)
    supplier.release_slot(CTX)
    assert capacity.active == 1 and capacity.has_room()


async def test_parked_renders_never_stop_the_worker_taking_the_ones_they_wait_for() -> None:
    """The deadlock of a bound on held renders: however many are parked, room remains."""
    capacity = RenderCapacity(2)
    supplier = capacity.supplier()
    for _ in range(40):  # 40 renders taken, each then parked behind one still queued
        assert supplier.try_reserve_slot(CTX) is not None
        capacity.parked += 1
    assert capacity.has_room(), "the worker must still take the renders they wait for"


async def test_a_render_in_its_tail_leaves_room_for_the_next() -> None:
    capacity = RenderCapacity(1)
    supplier = capacity.supplier()
    await supplier.reserve_slot(CTX)
    with capacity.render(counted=True):
        async with capacity.ffmpeg_permit():
            assert not capacity.has_room(), "FFmpeg runs: the cap is used"
        assert capacity.has_room(), "FFmpeg exited: the next render may come"
        await supplier.reserve_slot(CTX)  # does not wait
    assert not capacity.has_room(), "the render ended; its SDK slot is not released yet"
    supplier.release_slot(CTX)
    assert capacity.active == 1


async def test_renders_from_the_jobs_queue_do_not_move_the_counts() -> None:
    capacity = RenderCapacity(1)
    with capacity.render(counted=False):
        async with capacity.parked_while():
            assert capacity.parked == 0
        async with capacity.ffmpeg_permit():
            pass
        assert capacity.active == 0


async def test_ffmpeg_permits_never_exceed_the_cap() -> None:
    capacity = RenderCapacity(2)
    running = 0
    most = 0

    async def render() -> None:
        nonlocal running, most
        with capacity.render(counted=False):
            async with capacity.ffmpeg_permit():
                running += 1
                most = max(most, running)
                for _ in range(3):
                    await asyncio.sleep(0)
                running -= 1

    await asyncio.gather(*(render() for _ in range(7)))
    assert most == 2


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.sampled_from(["reserve", "park", "unpark", "tail", "end"]), max_size=60))
def test_property_a_slot_is_handed_out_only_with_room(steps: list[str]) -> None:
    """Whatever the renders do, the supplier hands a slot out exactly while fewer than the cap
    are active (however many are parked: they wait for renders it must still take); the counts
    never go negative."""
    cap = 2

    async def scenario() -> None:
        capacity = RenderCapacity(cap)
        supplier = capacity.supplier()
        renders: list[dict[str, Any]] = []  # each: its phase
        for step in steps:
            if step == "reserve":
                room = capacity.has_room()
                permit = supplier.try_reserve_slot(CTX)
                assert (permit is not None) == room
                if permit is not None:
                    assert capacity.active <= cap
                    renders.append({"phase": "active"})
            elif step == "park":
                active = [r for r in renders if r["phase"] == "active"]
                if active:
                    active[0]["phase"] = "parked"
                    capacity.parked += 1
            elif step == "unpark":
                parked = [r for r in renders if r["phase"] == "parked"]
                if parked:
                    parked[0]["phase"] = "active"
                    capacity.parked -= 1
            elif step == "tail":
                active = [r for r in renders if r["phase"] == "active"]
                if active:
                    active[0]["phase"] = "tail"
                    capacity._tails.add(asyncio.ensure_future(asyncio.sleep(0)))
            elif step == "end" and renders:
                ended = renders.pop(0)
                if ended["phase"] == "parked":
                    capacity.parked -= 1
                elif ended["phase"] == "tail":
                    capacity._tails.pop()
                supplier.release_slot(CTX)
            assert capacity.reserved == len(renders) >= 0
            assert capacity.parked >= 0 and capacity.active >= 0

    asyncio.run(scenario())


async def test_a_release_on_the_sdks_own_thread_wakes_a_waiting_reserve() -> None:
    """The SDK calls `release_slot` from a Rust thread. Setting the asyncio event there did not
    wake a loop asleep in `epoll`: a worker with nothing else to do stopped polling its render
    queue for good (the scale benchmark's second job, after 10,295 renders)."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # asyncio then refuses calls from other threads
    try:
        capacity = RenderCapacity(1)
        supplier = capacity.supplier()
        await supplier.reserve_slot(CTX)
        waiter = asyncio.ensure_future(supplier.reserve_slot(CTX))
        assert await _still_waiting(waiter)
        errors: list[BaseException] = []

        def release() -> None:
            try:
                supplier.release_slot(CTX)
            except BaseException as err:  # what the SDK's wrapper would only log
                errors.append(err)

        thread = threading.Thread(target=release)
        thread.start()
        thread.join()
        done, _ = await asyncio.wait([waiter], timeout=30)
        assert errors == [] and waiter in done
        assert capacity.reserved == 1
    finally:
        loop.set_debug(False)  # the loop outlives this test: debug mode slows and logs


def test_slots_taken_and_given_back_on_many_threads_keep_the_count() -> None:
    """`try_reserve_slot` and `release_slot` run on the SDK's threads: the count of reserved
    slots never passes the cap and ends where it began."""
    capacity = RenderCapacity(2)
    supplier = capacity.supplier()
    most = [0]

    def churn() -> None:
        for _ in range(5_000):
            if supplier.try_reserve_slot(CTX) is not None:
                most[0] = max(most[0], capacity.reserved)
                supplier.release_slot(CTX)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=churn) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert capacity.reserved == 0 and most[0] <= 2
