"""Load and cancellation through the in-memory client with the real backend on the tiny InternVL:
more calls than the inference queue holds are each answered or refused as busy (none lost), and a
cancelled generation stops and frees the worker."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from mcp import Client

from mcp_vision.server import build_server
from mcp_vision.service import VisionService
from mcp_vision.worker import Job

from . import hostile
from .support.wrapping import Wrapping

pytestmark = pytest.mark.anyio


class GatedBackend(Wrapping):
    """Every chat waits at a gate the test opens, so the inference queue stays full until then."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.chats = 0

    def chat(self, turns, job, *, max_new_tokens, conversation=None):
        self.chats += 1
        self.gate.wait(60)
        return self.inner.chat(turns, job, max_new_tokens=max_new_tokens, conversation=conversation)


class LongBackend(Wrapping):
    """Generation that never ends early: at least `max_new_tokens` tokens unless stopped."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.finished = threading.Event()
        self.finished_at = 0.0
        self.results: list = []

    def chat(self, turns, job, *, max_new_tokens, conversation=None):
        self.finished.clear()
        try:
            result = self.inner.chat(turns, job, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
            self.results.append(result)
            return result
        finally:
            self.finished_at = time.monotonic()
            self.finished.set()


async def test_more_calls_than_the_queue_holds_are_answered_or_refused_busy(settings, tiny_backend, media_dir):
    image = media_dir / "x.png"
    image.write_bytes(hostile.png())
    backend = GatedBackend(tiny_backend)
    service = VisionService(settings, backend)
    server = build_server(service=service)
    service.worker.max_queue = 2
    calls = 9
    results: list = []
    async with Client(server) as a, Client(server) as b, Client(server) as c:
        clients = [a, b, c]

        async def call(i: int) -> None:
            args = {"image": str(image), "max_tiles": 1, "max_new_tokens": 2}
            results.append(await clients[i % len(clients)].call_tool("describe_image", args))

        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(call, i)
            # The queue holds 2: every other call is refused while the gate keeps those 2 in place.
            with anyio.fail_after(120):
                while len(results) < calls - 2:
                    await anyio.sleep(0.02)
            assert len(results) == calls - 2 and all(r.is_error for r in results)
            backend.gate.set()
        after = await a.call_tool("describe_image", {"image": str(image), "max_tiles": 1, "max_new_tokens": 2})
    assert len(results) == calls  # none lost
    answered = [r for r in results if not r.is_error]
    busy = [r for r in results if r.is_error]
    assert len(answered) == 2 and len(busy) == calls - 2
    for r in busy:
        assert "busy" in r.content[0].text and "retry" in r.content[0].text
    for r in answered:
        assert r.structured_content["session_id"].startswith("vs_")
    assert backend.chats == 2 + 1  # refused calls never reached the model
    assert not after.is_error and service.worker.pending == 0


async def test_a_cancelled_generation_stops_and_frees_the_worker(settings, tiny_backend, media_dir):
    image = media_dir / "x.png"
    image.write_bytes(hostile.png())
    backend = LongBackend(tiny_backend)
    service = VisionService(settings, backend)
    server = build_server(service=service)
    generating = anyio.Event()

    async def on_progress(progress, total, message) -> None:
        if message and message.startswith("generating ("):
            generating.set()

    async with Client(server) as client:
        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                args = {"image": str(image), "max_tiles": 1, "max_new_tokens": 4000}
                await client.call_tool("describe_image", args, progress_callback=on_progress)
                pytest.fail("4000 tokens were generated: the call was not cancelled")

            tg.start_soon(long_call)
            with anyio.fail_after(120):
                await generating.wait()  # the model is generating now
            cancelled_at = time.monotonic()
            tg.cancel_scope.cancel()  # the client sends notifications/cancelled
        with anyio.fail_after(60):
            while not backend.finished.is_set():
                await anyio.sleep(0.02)
        stopped_after = backend.finished_at - cancelled_at
        result = backend.results[-1]
        assert result.finish_reason == "cancelled"
        assert result.output_tokens < 4000
        # Measured by events: the generation ended once the stop flag was seen, long before 4000 tokens
        # (several minutes on this model). The bound is generous for shared, noisy machines.
        assert stopped_after < 10, f"generation went on for {stopped_after:.1f} s after the cancel"
        started = time.monotonic()
        after = await client.call_tool("describe_image", {"image": str(image), "max_tiles": 1, "max_new_tokens": 1})
        assert not after.is_error, after.content
        assert time.monotonic() - started < 30  # the worker was free: no 4000-token job ahead of it
    assert service.worker.pending == 0


async def test_load_seconds_is_the_time_this_call_spent_loading(settings, media_dir):
    """The call that loads the model says how long it waited for it; the next says 0."""
    from PIL import Image

    from mcp_vision.backend.pytorch.engine import PyTorchBackend

    Image.new("RGB", (96, 64), "red").save(media_dir / "red.png")
    service = VisionService(settings, PyTorchBackend(settings))  # not loaded yet
    first = await service.describe_image(str(media_dir / "red.png"), max_new_tokens=2)
    again = await service.describe_image(str(media_dir / "red.png"), max_new_tokens=2)
    assert first.load_seconds > 0 and first.load_seconds <= first.seconds
    assert again.load_seconds == 0
