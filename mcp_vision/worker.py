"""The inference worker: model work runs off the event loop, on one thread for a local model (one job at
a time) or on a few for a remote engine (which batches), with a bounded queue.

A job reports progress from its thread; the awaiting coroutine relays it (and a heartbeat while
nothing else is said, so clients see the call is alive). Cancelling the awaiting coroutine sets the
job's stop flag, which generation checks between tokens.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .backend.base import Job
from .errors import BusyError

T = TypeVar("T")
# How progress reaches the caller: (done, total or None, message or None), awaited.
Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class InferenceWorker:
    def __init__(self, max_queue: int = 8, heartbeat_seconds: float = 5.0, parallel: int = 1) -> None:
        # A local model runs one job at a time; a remote engine batches, so it may take several.
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mcp-vision-inference")
        self.parallel = parallel
        self.max_queue = max_queue
        self.heartbeat_seconds = heartbeat_seconds
        self._pending = 0
        self._lock = threading.Lock()
        self._waiting: list[Job] = []  # queued, in order, not yet started
        self._running = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def run(
        self, fn: Callable[[Job], T], progress: Progress | None = None, label: str = "working",
        deadline: float | None = None,
    ) -> T:
        """Run `fn(job)` on the worker. Heartbeats say what is happening as it happens: "waiting for N earlier
        calls" while queued, then the job's own last message (`label` until it reports one). `deadline`
        (time.monotonic()) is when the job's generation stops (Job.out_of_time)."""
        if self._pending >= self.max_queue + self.parallel - 1:
            raise BusyError(
                f"The server is busy with {self._pending} queued model calls: retry in a little while."
            )
        loop = asyncio.get_running_loop()
        updates: deque[tuple[float, float | None, str | None]] = deque()
        wake = asyncio.Event()

        def arrived(update: tuple[float, float | None, str | None]) -> None:
            updates.append(update)
            wake.set()

        def report(p: float, total: float | None, message: str | None) -> None:
            loop.call_soon_threadsafe(arrived, (p, total, message))

        job = Job(_report=report, deadline=deadline)
        began: list[float] = []  # when the job left the queue

        def start() -> T:
            with self._lock:
                self._waiting.remove(job)
                self._running += 1
            began.append(time.monotonic())
            try:
                return fn(job)
            finally:
                with self._lock:
                    self._running -= 1

        self._pending += 1
        with self._lock:
            self._waiting.append(job)
        queued = time.monotonic()
        future = loop.run_in_executor(self._executor, start)
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
                    await progress(last[0], last[1], self._heartbeat(job, began, queued, last[2]))
        except asyncio.CancelledError:
            job.stop.set()
            future.cancel()  # never starts if it was still queued
            raise
        finally:
            self._pending -= 1
            with self._lock:
                if job in self._waiting:
                    self._waiting.remove(job)

    def _heartbeat(self, job: Job, began: list[float], queued: float, message: str) -> str:
        now = time.monotonic()
        if not began:
            with self._lock:
                ahead = self._running + (self._waiting.index(job) if job in self._waiting else 0)
            calls = "call" if ahead == 1 else "calls"
            return f"waiting for {ahead} earlier {calls} ({now - queued:.0f} s)"
        return f"{message} ({now - began[0]:.0f} s)"

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["InferenceWorker", "Job", "Progress"]
