"""The inference worker: one job at a time, progress relayed, heartbeats, cancellation, admission."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from mcp_vision.errors import BusyError
from mcp_vision.worker import InferenceWorker, Job

pytestmark = pytest.mark.anyio


async def test_progress_from_the_thread_reaches_the_caller():
    worker = InferenceWorker()
    seen: list[tuple] = []

    def work(job: Job) -> str:
        for i in range(3):
            job.report(i + 1, 3, f"step {i + 1}")
        return threading.current_thread().name

    async def sink(p, total, message):
        seen.append((p, total, message))

    name = await worker.run(work, progress=sink)
    assert name.startswith("mcp-vision-inference")
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_heartbeat_while_the_job_is_silent():
    worker = InferenceWorker(heartbeat_seconds=0.05)
    seen: list[str | None] = []

    async def sink(p, total, message):
        seen.append(message)

    await worker.run(lambda job: time.sleep(0.3), progress=sink, label="loading model")
    assert any(m and m.startswith("loading model (") for m in seen)


async def test_jobs_run_one_at_a_time():
    worker = InferenceWorker()
    active = 0
    peak = 0
    lock = threading.Lock()

    def work(job: Job) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(worker.run, work)
    assert peak == 1


async def test_a_full_queue_answers_busy_at_once():
    worker = InferenceWorker(max_queue=1)
    release = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run, lambda job: release.wait(5))
        await anyio.sleep(0.05)
        with pytest.raises(BusyError, match="retry"):
            await worker.run(lambda job: None)
        release.set()


async def test_cancelling_the_caller_sets_the_stop_flag():
    worker = InferenceWorker()
    started = threading.Event()
    stopped = threading.Event()

    def work(job: Job) -> None:
        started.set()
        while not job.cancelled():
            time.sleep(0.01)
        stopped.set()

    with anyio.move_on_after(0.2):
        await worker.run(work)
    assert started.is_set()
    assert stopped.wait(2), "the job did not see the stop flag"


async def test_heartbeats_name_the_phase_as_it_happens():
    """Queued behind another call: 'waiting for 1 earlier call'; then the job's own last phase, not a label
    fixed when it was queued."""
    worker = InferenceWorker(heartbeat_seconds=0.05)
    gate = threading.Event()
    seen: list[str | None] = []

    def first(job: Job) -> None:
        gate.wait(5)

    def second(job: Job) -> None:
        job.report(0, 10, "generating (0/10 tokens)")
        time.sleep(0.3)

    async def sink(p, total, message):
        seen.append(message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run, first)
        await anyio.sleep(0.05)
        tg.start_soon(lambda: worker.run(second, progress=sink, label="loading model"))
        await anyio.sleep(0.3)
        gate.set()
    waiting = [m for m in seen if m and m.startswith("waiting for 1 earlier call (")]
    later = [m for m in seen if m and m.startswith("generating (0/10 tokens) (")]
    assert waiting and later, seen
    assert seen.index(waiting[-1]) < seen.index(later[0])
    assert not any(m and m.startswith("loading model") for m in seen)
