"""A worker's render capacity: `VARIA_MAX_CONCURRENT_RENDERS` FFmpeg at once, and the render
queue's slot supplier that takes a new render exactly when one could start.

A render activity passes three phases: *active* (preparing, waiting for an FFmpeg permit, or
running FFmpeg), *parked* (waiting for its job's slot, held by the job's previous render in
that slot, here or on another worker) and *tail* (FFmpeg has exited: checking, measuring and
committing the output). Only active renders use the capacity: the supplier lets the SDK poll
for another render while fewer than `cap` renders are active, so the next FFmpeg starts while
the previous render's tail runs, and a parked render never blocks a render of another job.

Parked renders have no bound of their own: each waits for a render the job has in flight, and
the worker must go on taking renders until it has taken the ones they wait for (the matching
service does not hand tasks out in the order they were scheduled). A bound on all held renders
deadlocked a job of concurrency 32 on a worker capped at 2: it held only parked renders whose
predecessors were still queued (`benchmarks/fairness.py`). A job has at most `concurrency`
renders queued behind others, so the parked ones are bounded by the jobs' concurrency.

The SDK calls the supplier's `try_reserve_slot`, `mark_slot_used` and `release_slot` from its
own (Rust) threads, only `reserve_slot` on the event loop. So the count of reserved slots
changes under a lock, and a release wakes a waiting `reserve_slot` through
`call_soon_threadsafe`: an `asyncio.Event` set from another thread neither wakes a loop asleep
in `epoll` nor is ordered with the waiter's own check. A worker with nothing else to do stopped
polling its render queue for good after 10,295 renders of the scale benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar

from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)

_counted: ContextVar[bool] = ContextVar("varia_render_counted", default=False)
"""Whether the current render holds a slot of the supplier (it came from the render queue)."""


class RenderCapacity:
    """The FFmpeg permits of one worker process and the phase counts the supplier reads."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._permits = asyncio.Semaphore(cap)
        self.reserved = 0  # SDK slots handed out (polling, or running a render)
        self.parked = 0
        self._tails: set[asyncio.Task[object]] = set()
        self._changed = asyncio.Event()
        self._lock = threading.Lock()  # `reserved` changes on the SDK's threads too
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a reserve waits on

    @property
    def active(self) -> int:
        """Renders (and polls for one) that count against the cap."""
        return self.reserved - self.parked - len(self._tails)

    def has_room(self) -> bool:
        """Whether the render queue may take another render now."""
        return self.active < self.cap

    async def wait_for_room(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self.has_room():
            self._changed.clear()
            await self._changed.wait()

    def take_slot(self) -> bool:
        """Count one more reserved slot if there is room (any thread); whether it did."""
        with self._lock:
            if not self.has_room():
                return False
            self.reserved += 1
            return True

    def give_slot(self) -> None:
        """Count one reserved slot fewer (any thread) and wake a waiting reserve."""
        with self._lock:
            self.reserved -= 1
        self._notify()

    def _notify(self) -> None:
        """Wake `wait_for_room`, from whatever thread: on its loop, in order with its checks."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody ever waited
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(self._changed.set)

    @contextlib.asynccontextmanager
    async def parked_while(self) -> AsyncIterator[None]:
        """Count the current render as parked for the block (it waits for its job slot)."""
        if not _counted.get():
            yield
            return
        self.parked += 1
        self._notify()
        try:
            yield
        finally:
            self.parked -= 1

    @contextlib.asynccontextmanager
    async def ffmpeg_permit(self) -> AsyncIterator[None]:
        """Hold one of the worker's FFmpeg permits for the block; the render is active while
        it waits and runs, and in its tail once the block ends (until `render_done`)."""
        task = asyncio.current_task() if _counted.get() else None
        if task is not None:
            self._tails.discard(task)  # a bounds trial's second FFmpeg: active again
        async with self._permits:
            try:
                yield
            finally:
                if task is not None:
                    self._tails.add(task)
                    self._notify()

    @contextlib.contextmanager
    def render(self, counted: bool) -> Iterator[None]:
        """Wrap a whole render activity; `counted`: it holds a slot of this supplier (a render
        from the render queue, not one older workflow code scheduled on the job's queue).
        It leaves the tail count when it ends."""
        token = _counted.set(counted)
        try:
            yield
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tails.discard(task)
            _counted.reset(token)

    def supplier(self) -> RenderSlotSupplier:
        """The SDK slot supplier of the render queue's worker."""
        return RenderSlotSupplier(self)


class RenderSlotSupplier(CustomSlotSupplier):
    """Hands the render queue's worker a slot while `RenderCapacity.has_room()`."""

    def __init__(self, capacity: RenderCapacity) -> None:
        self.capacity = capacity

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        while True:  # a slot taken on another thread between the wait and the take: wait again
            await self.capacity.wait_for_room()
            if self.capacity.take_slot():
                return SlotPermit()

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        return SlotPermit() if self.capacity.take_slot() else None

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        return None

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        self.capacity.give_slot()
