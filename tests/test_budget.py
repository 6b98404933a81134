"""Time budgets on the real backend (the tiny InternVL): planning, answers cut at the deadline, a model load
that outlasts the call, and cancellation inside the vision pass and the prefill (partial OCR: test_ocr.py)."""

from __future__ import annotations

import threading
import time

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.backend.base import Job, Turn
from mcp_vision.budget import Budget, Speeds, plan
from mcp_vision.errors import InputError
from mcp_vision.server import build_server
from mcp_vision.service import VisionService

from .support.wrapping import Wrapping

pytestmark = pytest.mark.anyio


class EndlessAnswers(Wrapping):
    """The tiny backend, answers never ending early (min_new_tokens = max_new_tokens)."""

    def __init__(self, inner) -> None:
        self.inner = inner


    def chat(self, turns, job, *, max_new_tokens, min_new_tokens=None, conversation=None):
        return self.inner.chat(turns, job, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                               conversation=conversation)


class SlowLoad(Wrapping):
    """The tiny backend behind a load that takes `seconds`."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds, self._loaded, self.loads = inner, seconds, False, 0


    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self, job):
        if self._loaded:
            return 0.0
        self.loads += 1
        time.sleep(self.seconds)
        self._loaded = True
        return self.seconds


# ------------------------------------------------------------------ the plan


def test_a_plan_drops_frames_then_tiles_and_keeps_what_fits():
    slow = Speeds("cpu")
    slow.vision_tile.value, slow.prefill.value = 1.0, 10_000.0
    roomy = plan(Budget(100.0), slow, images=1, tiles=4, max_new_tokens=64)
    assert (roomy.tiles, roomy.reduced) == (4, False)
    tight = plan(Budget(6.0), slow, images=1, tiles=12, max_new_tokens=64)
    assert tight.reduced and tight.tiles is not None and tight.tiles < 12
    assert slow.upfront(tight.tiles + 1, 200) <= (6.0 - 0.5) * 0.5 + 0.1
    video = plan(Budget(6.0), slow, frames=32, max_new_tokens=64)
    assert video.reduced and video.frames is not None and video.frames <= 3
    assert plan(Budget(None), slow, images=1, tiles=12, max_new_tokens=64).reduced is False


def test_frames_beyond_the_context_are_dropped_even_without_a_budget():
    fitted = plan(Budget(None), Speeds("cpu"), frames=32, max_new_tokens=512, context=8192)
    assert fitted.reduced and fitted.frames == (8192 - 512 - 200) // (256 + 16)


def test_answer_length_is_cut_only_once_decoding_was_measured():
    speeds = Speeds("cpu")
    speeds.vision_tile.value, speeds.prefill.value, speeds.decode.value = 0.0, 1e6, 10.0
    assert plan(Budget(10.0), speeds, max_new_tokens=512).max_new_tokens == 512  # a guess never cuts
    speeds.decode.update(10.0)
    fitted = plan(Budget(10.0), speeds, max_new_tokens=512)
    assert fitted.reduced and 32 <= fitted.max_new_tokens <= 100


def test_first_guesses_come_from_the_model_size():
    small = Speeds("cpu", vision_params=10_000, language_params=20_000)
    big = Speeds("cpu", vision_params=300_000_000, language_params=1_500_000_000)
    assert small.vision_tile.value < 0.01 and big.vision_tile.value > 1.0
    assert big.decode.value < 10 and big.prefill.value < 200


def test_a_measured_slow_cpu_plans_fewer_tiles_for_the_first_call():
    """InternVL3-1B's sizes on a 50 s budget: the fixed CPU figure would let the first call plan 4 tiles; the
    rate measured on an AVX2-only CPU (bf16 emulated: a few GFLOP/s) plans what fits."""
    sizes = dict(vision_params=300_000_000, language_params=600_000_000)
    fixed = plan(Budget(50.0), Speeds("cpu", **sizes), images=1, tiles=12, max_new_tokens=256)
    slow = plan(Budget(50.0), Speeds("cpu", **sizes, flops=40e9), images=1, tiles=12, max_new_tokens=256)
    assert slow.tiles == 1 < fixed.tiles
    assert Speeds("cpu", **sizes, flops=40e9).upfront(1, 200) > 5 * Speeds("cpu", **sizes).upfront(1, 200) / 2


# ------------------------------------------------------------------ through the service


async def test_an_answer_cut_at_the_deadline_says_time(settings, tiny_backend, media_dir):
    image = media_dir / "a.png"
    Image.new("RGB", (64, 64), "red").save(image)
    service = VisionService(settings, EndlessAnswers(tiny_backend))
    started = time.monotonic()
    result = await service.describe_image(str(image), max_new_tokens=7000, max_tiles=1, time_budget=2.0)
    took = time.monotonic() - started
    assert result.finish_reason == "time" and 0 < result.usage.output_tokens < 7000
    assert result.budget is not None and result.budget.seconds == 2.0
    assert took < 10.0, took  # near the budget, far from what 7000 tokens take
    follow = await service.follow_up(result.session_id, "And?", max_new_tokens=2, time_budget=30)
    assert follow.finish_reason in {"stop", "length"}  # the cut answer is a normal turn of the session


async def test_a_tight_budget_reduces_tiles_and_says_so(settings, tiny_backend, media_dir):
    image = media_dir / "wide.png"
    Image.new("RGB", (1400, 900), "blue").save(image)
    service = VisionService(settings, tiny_backend)
    roomy = await service.describe_image(str(image), max_tiles=4, time_budget=60)
    assert roomy.budget.reduced is False and roomy.budget.tiles == 4 and 1 < roomy.tiles <= 5
    service.speeds.vision_tile.value = 1.0  # as on a slow CPU
    service.speeds.vision_tile.measured = False
    tight = await service.describe_image(str(image), max_tiles=4, time_budget=5)
    assert tight.budget.reduced is True and tight.budget.tiles < 4
    assert tight.tiles <= tight.budget.tiles + 1  # what was used is what the plan said


async def test_a_load_past_the_budget_goes_on_and_the_next_call_finds_the_model(settings, tiny_backend, media_dir):
    image = media_dir / "a.png"
    Image.new("RGB", (64, 64), "red").save(image)
    backend = SlowLoad(tiny_backend, 4.0)
    async with Client(build_server(settings, backend)) as client:
        started = time.monotonic()
        first = await client.call_tool("describe_image", {"image": str(image), "time_budget": 0.8})
        assert first.is_error and "still loading" in first.content[0].text, first.content[0].text
        assert time.monotonic() - started < 3.5  # answered before the 4 s load finished
        second = await client.call_tool("describe_image", {"image": str(image), "time_budget": 30, "max_tiles": 1})
    assert not second.is_error, second.content[0].text
    assert backend.loads == 1  # one load, shared by both calls


async def test_time_budget_is_validated_with_one_sentence(settings, tiny_backend):
    service = VisionService(settings, tiny_backend)
    with pytest.raises(InputError, match=r"time_budget=0 is out of range"):
        await service.follow_up("vs_nothing", "q", time_budget=0)
    async with Client(build_server(settings, tiny_backend)) as client:
        result = await client.call_tool("describe_image", {"image": "a.png", "time_budget": -1})
    assert result.is_error and "time_budget=-1 is out of range" in result.content[0].text


# ------------------------------------------------------------------ cancellation inside long layers


def test_a_cancelled_job_stops_before_the_vision_pass_and_prefill_run_through(tiny_backend):
    """The check before every layer: once cancelled, no further layer of the language model runs."""
    import torch

    layers = [m for m in tiny_backend._model.model.language_model.modules() if isinstance(m, torch.nn.ModuleList)][0]
    calls = []
    handle = layers[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        job = Job()
        job.stop.set()
        turns = [Turn.user("What is this?", [Image.new("RGB", (900, 600), "green")], max_tiles=6)]
        result = tiny_backend.chat(turns, job, max_new_tokens=50)
    finally:
        handle.remove()
    assert result.finish_reason == "cancelled" and result.output_tokens == 0 and calls == []
    after = tiny_backend.chat(turns, Job(), max_new_tokens=2)  # the backend is fine afterwards
    assert after.finish_reason in {"stop", "length"}


def test_cancelling_mid_batch_drops_every_page_of_it(tiny_backend):
    job = Job()
    pages = [[Turn("user", [Turn.user("x", [Image.new("RGB", (400, 560), c)], max_tiles=4).parts[0], "Read it."])]
             for c in ("red", "green", "blue")]
    timer = threading.Timer(0.01, job.stop.set)
    timer.start()
    results = tiny_backend.chat_batch(pages, job, max_new_tokens=400, min_new_tokens=400)
    timer.join()
    assert all(r.finish_reason == "cancelled" and r.output_tokens < 400 for r in results)

