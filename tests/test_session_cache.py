"""Sessions with nothing computed twice: KV prefix reuse and vision-feature reuse give the same greedy
output as recomputing everything (float32, tiny InternVL), within memory and context bounds."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from mcp_vision.backend.base import Turn
from mcp_vision.backend.pytorch.engine import PyTorchBackend
from mcp_vision.service import VisionService
from mcp_vision.settings import Settings
from mcp_vision.worker import Job


def _image(color: str, size=(900, 600)) -> Image.Image:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).ellipse([50, 50, 400, 300], fill="white")
    return img


@pytest.fixture(scope="module")
def uncached(tiny_model_dir):
    backend = PyTorchBackend(
        Settings(model=str(tiny_model_dir), device="cpu", quantization="none", dtype="float32", cache_bytes=0)
    )
    backend.load(Job())
    return backend


@pytest.fixture
def cached(tiny_model_dir):
    backend = PyTorchBackend(Settings(model=str(tiny_model_dir), device="cpu", quantization="none", dtype="float32"))
    backend.load(Job())
    return backend


def _conversation(backend, conversation, script):
    """Run a scripted conversation; return each turn's result."""
    history: list[Turn] = []
    results = []
    for question, images in script:
        history.append(Turn.user(question, images, max_tiles=4))
        result = backend.chat(history, Job(), max_new_tokens=8, min_new_tokens=8, conversation=conversation)
        history.append(Turn.assistant(result.history_text))
        results.append(result)
    return results


SCRIPT = [
    ("Describe this image.", [_image("red")]),
    ("What colour is the ellipse?", []),
    ("And now this one?", [_image("navy", (500, 700))]),  # a new image in a continuing session
    ("Which of the two is larger?", []),
]


def test_reuse_gives_the_same_greedy_output_as_recomputing(cached, uncached):
    with_reuse = _conversation(cached, "s1", SCRIPT)
    without = _conversation(uncached, None, SCRIPT)
    assert [r.output_ids for r in with_reuse] == [r.output_ids for r in without]
    assert len(set(tuple(r.output_ids) for r in without)) > 1, "the tiny model must not repeat one answer"
    # Follow-ups computed only their new tokens; no image was encoded twice.
    assert with_reuse[0].cached_tokens == 0
    for previous, result in zip(with_reuse, with_reuse[1:]):
        assert result.cached_tokens >= previous.prompt_tokens  # the whole earlier prompt was reused
    assert [r.images_encoded for r in with_reuse] == [1, 0, 1, 0]
    assert [r.images_encoded for r in without] == [1, 1, 2, 2]


def test_vision_features_are_reused_across_sessions(cached):
    first = _conversation(cached, "a", [("Describe.", [_image("green")])])[0]
    again = _conversation(cached, "b", [("Describe.", [_image("green")])])[0]
    other = _conversation(cached, "c", [("Describe.", [_image("yellow")])])[0]
    assert (first.images_encoded, again.images_encoded, other.images_encoded) == (1, 0, 1)
    assert again.output_ids == first.output_ids
    assert again.cached_tokens == 0  # another conversation's KV is never used


def test_conversations_are_isolated(cached, uncached):
    """Same words, different images: each follow-up matches its own conversation recomputed alone."""
    script_a = [("Describe.", [_image("red")]), ("More?", [])]
    script_b = [("Describe.", [_image("blue")]), ("More?", [])]
    a, b = _conversation(cached, "A", script_a), _conversation(cached, "B", script_b)
    assert a[1].output_ids == _conversation(uncached, None, script_a)[1].output_ids
    assert b[1].output_ids == _conversation(uncached, None, script_b)[1].output_ids


def test_a_cache_beyond_its_budget_evicts_least_recently_used(tiny_model_dir):
    backend = PyTorchBackend(
        Settings(model=str(tiny_model_dir), device="cpu", quantization="none", dtype="float32", cache_bytes=1_500_000)
    )
    for name in "abc":
        _conversation(backend, name, [("Describe.", [_image("red")])])
    cache = backend._cache
    assert cache.total_bytes <= 1_500_000
    assert cache.evictions > 0
    assert "p:c" in cache and "p:a" not in cache  # the newest stays, the oldest went


def test_forget_drops_a_conversation(cached):
    _conversation(cached, "gone", [("Describe.", [_image("red")])])
    assert "p:gone" in cached._cache
    cached.forget("gone")
    assert "p:gone" not in cached._cache


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_history_beyond_the_context_drops_the_oldest_exchanges(tiny_model_dir, media_dir, cached):
    # 13 tiles of 256 tokens a describe: the third one no longer fits the 8,192-token context with the first.
    settings = Settings(
        model=str(tiny_model_dir), allowed_dirs=(media_dir,), max_tiles=12, max_new_tokens=4, dtype="float32",
        device="cpu", quantization="none",
    )
    service = VisionService(settings, cached)
    paths = []
    for i, color in enumerate(["red", "green", "blue"]):
        path = media_dir / f"{i}.png"
        _image(color, (1600, 1200)).save(path)
        paths.append(str(path))
    r1 = await service.describe_image(paths[0])
    r2 = await service.describe_image(paths[1], session_id=r1.session_id)
    r3 = await service.describe_image(paths[2], session_id=r1.session_id)
    assert (r1.dropped_turns, r2.dropped_turns) == (0, 0)
    assert r3.dropped_turns >= 1
    follow = await service.follow_up(r1.session_id, "Which images do you see?")
    assert follow.turns == 4 and follow.usage.prompt_tokens + 4 <= 8192


def test_session_bounds_drop_oldest_exchanges():
    from mcp_vision.sessions import SessionStore

    store = SessionStore(max_exchanges=2, max_images=10)
    session = store.create()
    for i in range(3):
        store.append(session, [Turn.user(f"q{i}"), Turn.assistant(f"a{i}")])
    assert [t.text for t in session.turns] == ["q1", "a1", "q2", "a2"]
    assert session.dropped_turns == 1 and session.turn_count == 3


def test_evicted_sessions_release_their_cache():
    from mcp_vision.sessions import SessionStore

    released: list[str] = []
    store = SessionStore(max_sessions=1, on_evict=released.append)
    first = store.create()
    store.create()
    assert released == [first.id]
