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


# ------------------------------------------------------------------------------------------ fair queueing


async def _until(reached) -> None:
    """Until `reached()` holds (the task group has started the jobs it counts); a test fails after 10 s."""
    with anyio.fail_after(10):
        while not reached():
            await anyio.sleep(0.01)


async def _queued(worker: InferenceWorker, count: int) -> None:
    """Until `count` jobs wait in the lines."""
    await _until(lambda: worker.waiting >= count)


async def test_callers_take_turns_round_robin():
    """One thread, a job running; A queues 3, B 3, C 1: they run A B C A B A B, not in arrival order."""
    worker = InferenceWorker(per_caller=8)
    gate = threading.Event()
    order: list[str] = []

    def job(name: str):
        return lambda _job: order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(lambda _job: gate.wait(5), caller="first"))
        await anyio.sleep(0.05)
        for index, name in enumerate(["A", "A", "A", "B", "B", "B", "C"]):
            tg.start_soon(lambda n=name: worker.run(job(n), caller=n))
            await _queued(worker, index + 1)
        gate.set()
    assert order == ["A", "B", "C", "A", "B", "A", "B"]
    assert worker.pending == 0 and worker.waiting == 0 and worker.running == 0


async def test_a_caller_over_its_share_is_refused_with_when_to_retry():
    worker = InferenceWorker(max_queue=8, per_caller=2)
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: worker.run(lambda _job: gate.wait(5), caller="greedy"))
        await _until(lambda: worker.pending >= 2)
        with pytest.raises(BusyError, match=r"you already have 2 model calls .* retry in about \d+(\.\d)? s"):
            await worker.run(lambda _job: None, caller="greedy")
        # Another caller, and the local user (no per-caller share), still get in.
        tg.start_soon(lambda: worker.run(lambda _job: None, caller="other"))
        for _ in range(3):
            tg.start_soon(lambda: worker.run(lambda _job: None))
        await _until(lambda: worker.pending >= 6)
        assert worker.held("greedy") == 2 and worker.held("other") == 1 and worker.held(None) == 3
        gate.set()
    assert worker.pending == 0


async def test_a_full_queue_still_lets_in_a_caller_with_nothing_queued():
    """The queue (2 places) is full of A's calls: B, with none, gets one place; A's next is refused."""
    worker = InferenceWorker(max_queue=2, per_caller=3)
    gate = threading.Event()
    ran: list[str] = []
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: worker.run(lambda _job: gate.wait(5), caller="A"))
        await _until(lambda: worker.pending >= 2)
        with pytest.raises(BusyError, match="busy with 2 queued model calls"):
            await worker.run(lambda _job: None, caller="A")
        tg.start_soon(lambda: worker.run(lambda _job: ran.append("B"), caller="B"))
        await _until(lambda: worker.pending >= 3)
        with pytest.raises(BusyError):
            await worker.run(lambda _job: None, caller="B")  # a place once, not a second
        gate.set()
    assert ran == ["B"] and worker.pending == 0


async def test_a_cancelled_waiting_call_gives_its_place_back():
    worker = InferenceWorker(max_queue=2, per_caller=3)
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(lambda _job: gate.wait(5), caller="A"))
        await _until(lambda: worker.running >= 1)
        with anyio.move_on_after(0.1):
            await worker.run(lambda _job: pytest.fail("a cancelled call ran"), caller="A")
        assert worker.pending == 1 and worker.waiting == 0 and worker.held("A") == 1
        gate.set()
    assert worker.pending == 0


async def test_the_retry_hint_follows_the_measured_jobs_but_not_the_model_load():
    from mcp_vision.worker import FIRST_GUESS_SECONDS

    worker = InferenceWorker(parallel=2)
    assert worker.retry_after() == FIRST_GUESS_SECONDS / 2  # one caller's round, two threads
    for _ in range(2):
        await worker.run(lambda _job: time.sleep(0.2), caller="A")
    measured = worker.retry_after()
    assert measured != FIRST_GUESS_SECONDS / 2
    await worker.run(lambda _job: time.sleep(0.3), caller="A", measured=False)  # a model load: not a call
    assert worker.retry_after() == measured
