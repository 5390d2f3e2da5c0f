"""A job's render slots: at most `concurrency` FFmpeg of one job at once, across all workers,
each slot's renders in the order the workflow scheduled them.

With render-ahead (`VariationJob`'s patch `render-ahead`) the workflow keeps two renders per
slot in flight: the one running and the next, so the next FFmpeg starts the moment the previous
one exits instead of a workflow task later. Two files in the job directory, which every worker
of the job shares, keep them apart:

- `.varia-slot-<k>.lock`: a render holds its `flock` for exactly the time its FFmpeg runs (a
  worker that dies releases it with its descriptors). A render waiting behind one in the same
  process is woken the moment it lets go; one held by another process is waited for in a
  thread of its own.
- `.varia-slot-<k>.turn`: the highest `order` whose turn in the slot is over (its FFmpeg
  exited, or its attempt ended without one). A render that `follows` another waits until that
  one's turn is over before it takes the lock, so the next never overtakes the running one.

A job directory deleted while renders wait ends their wait with `JobDirGone`: no turn can be
recorded there any more, so they would otherwise wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Protocol

from varia import names
from varia.jobdir import JobDirGone, job_dir_gone, open_own
from varia.models import MAX_CONCURRENCY

log = logging.getLogger("varia.activities")

TURN_POLL_S = 0.05
"""How often a render re-reads its slot's turn while the render it follows is in another
process (one in this process wakes it at once)."""
TURN_RETRY_S = 2.0
"""How often a turn that could not be written (a full or read-only disk) is tried again: the
renders queued behind it wait for it, and go on once the disk lets it be written. Also how
often a render waiting on one in this process, or on a lock another process holds, looks
whether the job directory is still there."""


class Release(Protocol):
    """Lets go of a slot: ends the render's turn (the next may go), or with `end_turn=False`
    only leaves it (`JobSlots.leave_turn`)."""

    def __call__(self, end_turn: bool = True) -> None: ...


class JobSlots:
    """The job slots of the renders in this process."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Event] = {}  # lock path held here: set when released
        self._turns: dict[str, asyncio.Event] = {}  # turn path: set when a turn here ends
        self._here: dict[str, set[int]] = {}  # turn path: orders of the renders in this process

    def try_acquire(
        self, job_dir: Path, slot: int, order: int | None, follows: int | None
    ) -> Release | None:
        """`acquire` without waiting: the release function, or None if it would wait."""
        turn = str(job_dir / names.slot_turn_name(slot))
        if follows is not None and _read_turn(turn) < follows:
            return None
        lock = str(job_dir / names.slot_lock_name(slot))
        fd = None if lock in self._held else _try_flock(lock)
        if fd is None:
            return None
        if order is not None:
            self._here.setdefault(turn, set()).add(order)
        return self._holding(lock, fd, job_dir, slot, order)

    async def acquire(
        self, job_dir: Path, slot: int, order: int | None, follows: int | None
    ) -> Release:
        """Take slot `slot` of the job in `job_dir` once the render `follows` had its turn,
        waiting while the slot is held; returns the function that releases it (and ends this
        render's turn). Cancellable while waiting (then nothing stays held); raises
        `JobDirGone` once the job directory is gone."""
        turn = str(job_dir / names.slot_turn_name(slot))
        if order is not None:
            self._here.setdefault(turn, set()).add(order)
        lock = str(job_dir / names.slot_lock_name(slot))
        try:
            if follows is not None:
                await self._wait_turn(job_dir, turn, follows)
            while True:
                if lock in self._held:  # a render here holds it: it wakes us as it lets go
                    await self._held[lock].wait()
                    continue
                fd = _try_flock(lock)
                if fd is None:  # another process holds it
                    fd = await _flock_in_thread(lock, job_dir)
                return self._holding(lock, fd, job_dir, slot, order)
        except BaseException as err:
            self._leave_turn(turn, order)
            if isinstance(err, OSError) and (gone := job_dir_gone(job_dir)) is not None:
                raise gone from None  # the lock could not be made: that is why
            raise

    def _holding(self, lock: str, fd: int, job_dir: Path, slot: int, order: int | None) -> Release:
        self._held[lock] = asyncio.Event()

        def release(end_turn: bool = True) -> None:
            os.close(fd)  # closing the only descriptor releases the flock
            self._held.pop(lock).set()
            if end_turn:
                self.end_turn(job_dir, slot, order)
            else:
                self.leave_turn(job_dir, slot, order)

        return release

    def end_turn(self, job_dir: Path, slot: int, order: int | None) -> None:
        """Say that render `order`'s turn in the slot is over (idempotent): its FFmpeg exited,
        or its attempt ends without one. The render that follows it may start."""
        turn = str(job_dir / names.slot_turn_name(slot))
        if order is not None and not _try_raise_turn(turn, order):
            log.warning(  # a full disk: the render's own error says why
                "could not end the turn of render %s in %s; trying again every %.0f s",
                *(order, turn, TURN_RETRY_S),
            )
            self._retry_turn(turn, order)
        self._leave_turn(turn, order)

    def _retry_turn(self, turn: str, order: int) -> None:
        """Try to write the turn again every `TURN_RETRY_S` until it is written or the job
        directory is gone: otherwise the renders queued behind it would wait forever, even
        after the disk recovered (found by review: `chattr +i` on the job dir for 30 s)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a plain call): nothing can wait on it here

        def again() -> None:
            if _try_raise_turn(turn, order):
                log.info("ended the turn of render %s in %s", order, turn)
                self._wake(turn)
            else:
                loop.call_later(TURN_RETRY_S, again)

        loop.call_later(TURN_RETRY_S, again)

    def leave_turn(self, job_dir: Path, slot: int, order: int | None) -> None:
        """This render's attempt ends without ending its turn: its workflow is gone, so the
        renders queued behind it keep waiting (they stop at their next heartbeat) instead of
        starting FFmpeg for a job nobody waits for. A retry of this render ends the turn."""
        self._leave_turn(str(job_dir / names.slot_turn_name(slot)), order)

    def _leave_turn(self, turn: str, order: int | None) -> None:
        here = self._here.get(turn)
        if here is not None and order is not None:
            here.discard(order)
            if not here:
                del self._here[turn]
        self._wake(turn)

    def _wake(self, turn: str) -> None:
        """Wake the renders here waiting on this slot's turn: they re-read it."""
        event = self._turns.pop(turn, None)
        if event is not None:
            event.set()

    async def _wait_turn(self, job_dir: Path, turn: str, follows: int) -> None:
        while _read_turn(turn) < follows:
            if (gone := job_dir_gone(job_dir)) is not None:  # no turn can be recorded any more
                raise gone
            event = self._turns.setdefault(turn, asyncio.Event())
            local = follows in self._here.get(turn, ())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), TURN_RETRY_S if local else TURN_POLL_S)

    def __len__(self) -> int:
        """Locks, turn events and turn registrations kept: 0 when no render is here."""
        return len(self._held) + len(self._turns) + len(self._here)


def slots_in_use(job_dir: Path) -> list[str]:
    """The slot locks of `job_dir` that a render holds right now: its FFmpeg still runs (on
    any worker of this host, or any host whose file system honours `flock`)."""
    held = []
    for slot in range(MAX_CONCURRENCY):
        name = names.slot_lock_name(slot)
        try:
            fd = os.open(job_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # no such slot (or not a plain file: not a render's lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(name)
        finally:
            os.close(fd)  # a lock taken here is let go at once
    return held


def _read_turn(path: str) -> int:
    """The highest order whose turn is over (-1: none yet)."""
    try:
        fd = open_own(Path(path), os.O_RDONLY)
    except FileNotFoundError:
        return -1
    with os.fdopen(fd, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        text = handle.read().strip()
    return int(text) if text.isdigit() else -1


def _try_raise_turn(path: str, order: int) -> bool:
    """`_raise_turn`; False if it could not be written now (True if the directory is gone:
    the renders waiting for it see that themselves, `_wait_turn`)."""
    try:
        _raise_turn(path, order)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _raise_turn(path: str, order: int) -> None:
    """Set the turn to `order` unless it is higher already (under a short `flock`)."""
    fd = open_own(Path(path), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.pread(fd, 32, 0).strip()
        if not text.isdigit() or int(text) < order:
            data = f"{order}\n".encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _try_flock(path: str) -> int | None:
    """An open descriptor of `path` holding its exclusive `flock`; None if it is held (by
    another process, or by another descriptor here: `flock` tells those apart too)."""
    fd = open_own(Path(path), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


async def _flock_in_thread(path: str, job_dir: Path) -> int:
    """Wait for the `flock` in a thread of its own, on a descriptor of its own (a blocked
    `flock` cannot be interrupted): if the wait is cancelled, or ends with `JobDirGone` (looked
    at every `TURN_RETRY_S`), the thread closes the descriptor once it gets the lock, which
    releases it at once."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    def hand_over(fd: int | None, error: BaseException | None) -> None:
        if done.done():  # the wait was cancelled meanwhile
            if fd is not None:
                os.close(fd)
        elif error is not None:
            done.set_exception(error)
        else:
            assert fd is not None
            done.set_result(fd)

    def wait() -> None:
        try:
            fd = open_own(Path(path), os.O_RDWR | os.O_CREAT)
        except OSError as err:
            loop.call_soon_threadsafe(hand_over, None, err)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            os.close(fd)
            loop.call_soon_threadsafe(hand_over, None, err)
            return
        try:
            loop.call_soon_threadsafe(hand_over, fd, None)
        except RuntimeError:  # the loop is closed: nobody will take it
            os.close(fd)

    threading.Thread(target=wait, name="varia-job-slot", daemon=True).start()
    try:
        while not done.done():
            await asyncio.wait([done], timeout=TURN_RETRY_S)
            if not done.done() and (gone := job_dir_gone(job_dir)) is not None:
                raise gone  # the holder's FFmpeg writes into a deleted directory: stop waiting
        return done.result()
    except (asyncio.CancelledError, JobDirGone):
        if done.done() and not done.cancelled() and done.exception() is None:
            os.close(done.result())  # got it as the wait ended: give it back
        done.cancel()  # (or the thread gives back the lock it gets later)
        raise
