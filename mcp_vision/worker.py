"""The inference worker: model work runs off the event loop, on one thread for a local model (one job at
a time) or on a few for a remote engine (which batches), with a bounded queue shared fairly by callers.

Fair queueing: each caller (principal) has its own line; when a thread frees, the next job comes from the next
caller in turn (round robin), so one caller's 30-page OCR (a job per batch of pages) takes turns with everyone
else's calls instead of going first. The queue holds `max_queue + parallel - 1` jobs; an authenticated caller
may have at most `per_caller` of them, and a caller with none is let in even when the queue is full (it grows
by at most one a caller), so a full queue never shuts a newcomer out. A refusal says when to retry, from the
measured length of a job.

A job reports progress from its thread; the awaiting coroutine relays it (and a heartbeat while
nothing else is said, so clients see the call is alive). Cancelling the awaiting coroutine sets the
job's stop flag, which generation checks between tokens.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .backend.base import Job
from .errors import BusyError

T = TypeVar("T")
# How progress reaches the caller: (done, total or None, message or None), awaited.
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
Caller = str | None  # a principal's key (access.principal); None: the local user, who has no per-caller cap

# A job's length before any has been measured (for the retry hint): short, as a hint too early costs a caller one
# more quick refusal, while one too late leaves its place unused.
FIRST_GUESS_SECONDS = 1.0


@dataclass(eq=False)
class _Ticket:
    """One admitted job: waiting in its caller's line, then running."""

    caller: Caller
    job: Job
    call: Callable[[], Any]
    measured: bool = True  # its length informs the retry hint (not the model load's)
    queued: float = field(default_factory=time.monotonic)
    began: float | None = None  # when it left the queue
    done: asyncio.Future | None = None  # on the caller's loop: the job's result


class InferenceWorker:
    def __init__(
        self, max_queue: int = 8, heartbeat_seconds: float = 5.0, parallel: int = 1, per_caller: int = 3,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        # A local model runs one job at a time; a remote engine batches, so it may take several.
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mcp-vision-inference")
        self.parallel = parallel
        self.max_queue = max_queue
        self.per_caller = per_caller
        self.heartbeat_seconds = heartbeat_seconds
        self.on_wait = on_wait  # told how long each job waited in the queue (metrics)
        self._lock = threading.RLock()  # the lines and counts; taken on the loop and on the threads
        self._lines: dict[Caller, deque[_Ticket]] = {}  # each caller's waiting jobs, oldest first
        self._turns: deque[Caller] = deque()  # callers with a waiting job, in the order they are served
        self._held: dict[Caller, int] = {}  # each caller's admitted jobs, waiting or running
        self._running = 0
        self._seconds = FIRST_GUESS_SECONDS  # a job's length, smoothed over the jobs measured
        self._measured = 0

    @property
    def pending(self) -> int:
        """Jobs admitted and not yet finished (waiting or running)."""
        return sum(self._held.values())

    @property
    def waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    @property
    def running(self) -> int:
        return self._running

    def held(self, caller: Caller) -> int:
        return self._held.get(caller, 0)

    def _admit(self, caller: Caller) -> None:
        """Take a place for `caller`'s job, or raise BusyError saying when to retry."""
        capacity = self.max_queue + self.parallel - 1
        own, total = self.held(caller), self.pending
        if caller is not None and own >= self.per_caller:
            raise BusyError(
                f"The server is busy: you already have {own} model calls queued or running, the most one caller "
                f"may have: retry in about {_seconds(self.retry_after())} s, once one of them has finished."
            )
        if total >= capacity and own > 0:
            raise BusyError(
                f"The server is busy with {total} queued model calls: retry in about {_seconds(self.retry_after())} s."
            )
        self._held[caller] = own + 1

    def retry_after(self) -> float:
        """Seconds until a place is likely free again for a caller: one round of turns (a job of every caller
        with work waiting, `parallel` at a time), at the measured length of a job."""
        callers = max(1, len(self._turns))
        return self._seconds * callers / self.parallel

    async def run(
        self, fn: Callable[[Job], T], progress: Progress | None = None, label: str = "working",
        deadline: float | None = None, caller: Caller = None, measured: bool = True,
    ) -> T:
        """Run `fn(job)` on the worker, in `caller`'s turn. Heartbeats say what is happening as it happens:
        "waiting for N earlier calls" while queued, then the job's own last message (`label` until it reports
        one). `deadline` (time.monotonic()) is when the job's generation stops (Job.out_of_time). `measured`: whether
        its length counts toward the retry hint (the model load's does not: it is not a call's)."""
        loop = asyncio.get_running_loop()
        updates: deque[tuple[float, float | None, str | None]] = deque()
        wake = asyncio.Event()

        def arrived(update: tuple[float, float | None, str | None]) -> None:
            updates.append(update)
            wake.set()

        def report(p: float, total: float | None, message: str | None) -> None:
            loop.call_soon_threadsafe(arrived, (p, total, message))

        job = Job(_report=report, deadline=deadline)
        ticket = _Ticket(caller, job, lambda: fn(job), measured=measured, done=loop.create_future())
        with self._lock:
            self._admit(caller)
            self._lines.setdefault(caller, deque()).append(ticket)
            if caller not in self._turns:
                self._turns.append(caller)
            self._dispatch()
        future = ticket.done
        try:
            last: tuple[float, float | None, str] = (0.0, None, label)
            while True:
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({future, waiter}, timeout=self.heartbeat_seconds,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()  # also when this call is cancelled: no waiter is left pending
                wake.clear()
                # Updates reported before the job returned are queued before its completion: relay them all.
                delivered = bool(updates)
                while updates:
                    p, total, message = updates.popleft()
                    last = (p, total, message or last[2])
                    if progress is not None:
                        await progress(p, total, message)
                if future.done():
                    return future.result()
                if not delivered and progress is not None:
                    await progress(last[0], last[1], self._heartbeat(ticket, last[2]))
        except asyncio.CancelledError:
            job.stop.set()
            with self._lock:
                if ticket.began is None:  # never starts: out of its line, its place given back
                    self._leave(ticket)
            raise

    def _leave(self, ticket: _Ticket) -> None:
        """A waiting ticket leaves its line (cancelled) and gives its place back."""
        line = self._lines.get(ticket.caller)
        if line is not None and ticket in line:
            line.remove(ticket)
            if not line:
                del self._lines[ticket.caller]
                self._turns.remove(ticket.caller)
            self._release(ticket.caller)

    def _release(self, caller: Caller) -> None:
        left = self._held.get(caller, 0) - 1
        if left > 0:
            self._held[caller] = left
        else:
            self._held.pop(caller, None)

    def _dispatch(self) -> None:
        """Start waiting jobs while threads are free, one from each caller in turn (under the lock)."""
        while self._running < self.parallel and self._turns:
            caller = self._turns.popleft()
            line = self._lines[caller]
            ticket = line.popleft()
            if line:
                self._turns.append(caller)  # to the back: every other caller with work goes first
            else:
                del self._lines[caller]
            self._running += 1
            ticket.began = time.monotonic()
            if self.on_wait is not None:
                self.on_wait(ticket.began - ticket.queued)
            submitted = self._executor.submit(ticket.call)
            submitted.add_done_callback(lambda done, t=ticket: self._finished(t, done))

    def _finished(self, ticket: _Ticket, done: Future) -> None:
        """On the job's thread: hand the result to the caller's loop, free the thread, start the next job."""
        with self._lock:
            self._running -= 1
            self._release(ticket.caller)
            if ticket.measured and not done.cancelled() and ticket.began is not None:
                self._measured += 1
                weight = 1.0 if self._measured == 1 else 0.3  # the first measurement replaces the guess
                self._seconds += weight * (time.monotonic() - ticket.began - self._seconds)
            self._dispatch()
        target = ticket.done
        if target is None:
            return

        def settle() -> None:
            if target.done():
                return
            if done.cancelled():
                target.cancel()
            elif done.exception() is not None:
                target.set_exception(done.exception())
            else:
                target.set_result(done.result())

        try:
            target.get_loop().call_soon_threadsafe(settle)
        except RuntimeError:  # the caller's loop has closed: nobody waits for this result
            pass

    def _heartbeat(self, ticket: _Ticket, message: str) -> str:
        now = time.monotonic()
        if ticket.began is None:
            with self._lock:
                ahead = self._running + self._ahead_of(ticket)
            calls = "call" if ahead == 1 else "calls"
            return f"waiting for {ahead} earlier {calls} ({now - ticket.queued:.0f} s)"
        return f"{message} ({now - ticket.began:.0f} s)"

    def _ahead_of(self, ticket: _Ticket) -> int:
        """Waiting jobs that start before `ticket`: its caller's earlier ones, and as many rounds of the other
        callers' turns (one more of those served before its caller in the order)."""
        line = self._lines.get(ticket.caller)
        if line is None or ticket not in line:
            return 0
        rounds = line.index(ticket)
        mine = list(self._turns).index(ticket.caller)
        ahead = rounds
        for place, other in enumerate(self._turns):
            if other != ticket.caller:
                ahead += min(len(self._lines[other]), rounds + (1 if place < mine else 0))
        return ahead

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _seconds(value: float) -> str:
    """A wait in words a client can act on: tenths under 10 s (a stub engine's calls take a fraction of one)."""
    return f"{max(0.1, value):.1f}" if value < 10 else f"{math.ceil(value)}"


__all__ = ["InferenceWorker", "Job", "Progress", "Caller"]
