"""The remote engine backend against a local HTTP server that speaks the OpenAI chat-completions wire
format (streaming included) and records every request: the exact messages sent, retries, errors,
the API key, cancellation, and all five tools end to end without torch."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from PIL import Image

from mcp_vision.backend import create_backend
from mcp_vision.backend.base import Backend, ImagePart, Turn
from mcp_vision.backend.remote import RemoteBackend
from mcp_vision.backend.remote.errors import engine_message as _engine_message
from mcp_vision.errors import BusyError, ContextOverflowError, ModelUnavailableError
from mcp_vision.server import build_server
from mcp_vision.service import VisionService
from mcp_vision.settings import Settings
from mcp_vision.worker import Job

from .support.remote import ANSWER, KEY, MODEL, FakeEngine, Reply, engine, quick_backoff, remote_settings  # noqa: F401 - fixtures

# ---------------------------------------------------------------- helpers


def _noise(path: Path, size=(120, 80), seed=0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _decoded(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix), url[:40]
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    assert image.format == "PNG"
    image.load()
    return image


def _same_pixels(url: str, path: Path) -> bool:
    sent = _decoded(url)
    original = Image.open(path).convert("RGB")
    return sent.size == original.size and sent.convert("RGB").tobytes() == original.tobytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


# ---------------------------------------------------------------- the messages sent


@pytest.mark.anyio
async def test_describe_image_sends_the_image_as_a_png_data_uri_and_the_question(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "photo.png")
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("describe_image", {"image": str(photo), "question": "What is it?", "max_tiles": 5})
    assert not r.is_error, r.content
    assert [q["method"] + " " + q["path"] for q in engine.requests] == ["GET /v1/models", "POST /v1/chat/completions"]
    request = engine.chats[0]
    body = request["body"]
    assert {k: v for k, v in body.items() if k != "messages"} == {
        "model": MODEL,
        "max_tokens": 16,
        "temperature": 0,
        "skip_special_tokens": False,  # the box markup a Qwen model writes is special to its tokenizer
        "spaces_between_special_tokens": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    [message] = body["messages"]
    assert message["role"] == "user"
    image_item, text_item = message["content"]
    assert text_item == {"type": "text", "text": "What is it?"}
    assert image_item["type"] == "image_url" and set(image_item["image_url"]) == {"url"}
    assert _same_pixels(image_item["image_url"]["url"], photo)  # lossless
    assert all(q["headers"]["authorization"] == f"Bearer {KEY}" for q in engine.requests)
    assert request["headers"]["accept"] == "text/event-stream"
    data = r.structured_content
    assert data["answer"] == ANSWER and data["model"] == MODEL
    assert data["tiles"] == 5  # the budget asked for; the engine tiles by itself
    assert data["usage"] == {"prompt_tokens": 321, "image_tokens": 0, "output_tokens": 4, "cached_tokens": 0}
    assert data["finish_reason"] == "stop"


@pytest.mark.anyio
async def test_follow_up_sends_the_history_as_real_turns(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    async with Client(build_server(remote_settings)) as client:
        first = await client.call_tool("describe_image", {"image": str(photo), "question": "What colour?"})
        sid = first.structured_content["session_id"]
        second = await client.call_tool("follow_up", {"session_id": sid, "question": "Is it a photo?"})
        third = await client.call_tool("follow_up", {"session_id": sid, "question": "Any text?"})
    assert not second.is_error and not third.is_error, (second.content, third.content)
    asked = [c["body"]["messages"] for c in engine.chats]
    assert asked[1] == [
        asked[0][0],  # the same image, the same data URI
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Is it a photo?"},
    ]
    assert asked[2] == [*asked[1], {"role": "assistant", "content": ANSWER}, {"role": "user", "content": "Any text?"}]
    assert third.structured_content["turns"] == 3


@pytest.mark.anyio
async def test_compare_images_numbers_the_images_in_order(engine, remote_settings, media_dir):
    a, b = _noise(media_dir / "a.png", seed=1), _noise(media_dir / "b.png", seed=2)
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("compare_images", {"images": [str(a), str(b)], "question": "What moved?"})
    assert not r.is_error, r.content
    [message] = engine.chats[0]["body"]["messages"]
    content = message["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "text", "image_url", "text"]
    assert content[0]["text"] == "Image-1: " and content[2]["text"] == "Image-2: "
    assert content[4]["text"].startswith("Measured pixel differences") and content[4]["text"].endswith("What moved?")
    assert _same_pixels(content[1]["image_url"]["url"], a) and _same_pixels(content[3]["image_url"]["url"], b)
    assert r.structured_content["tiles"] == [6, 6]
    assert r.structured_content["answer"] == ANSWER


@pytest.mark.anyio
async def test_video_qa_labels_frames_and_sends_them_at_one_tile_size(engine, remote_settings, media_dir):
    gif = media_dir / "anim.gif"
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (80, 60), c) for c in colors]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=300, loop=0)
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("video_qa", {"video": str(gif), "question": "What changes?", "num_frames": 3})
    assert not r.is_error, r.content
    [message] = engine.chats[0]["body"]["messages"]
    content = message["content"]
    assert [c["type"] for c in content] == ["text", "image_url"] * 3 + ["text"]
    assert [content[i]["text"] for i in (0, 2, 4)] == ["Frame1: ", "Frame2: ", "Frame3: "]
    assert "Frame1: 0.00 s" in content[6]["text"] and content[6]["text"].endswith("What changes?")
    for index, color in enumerate(colors):
        sent = _decoded(content[2 * index + 1]["image_url"]["url"])
        # One tile: sent at InternVL's 448x448 input size, so no engine splits it further.
        assert sent.size == (448, 448)
        assert sent.convert("RGB").getcolors() == [(448 * 448, color)]
    assert len(r.structured_content["frames"]) == 3 and r.structured_content["answer"] == ANSWER


@pytest.mark.anyio
async def test_ocr_sends_only_scanned_pages_and_the_pages_join_the_session(engine, remote_settings, media_dir):
    import pymupdf

    pdf = media_dir / "mixed.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "Born-digital text on page one.", fontsize=12)
    scan = io.BytesIO()
    Image.new("RGB", (600, 200), "white").save(scan, format="PNG")
    page = doc.new_page()
    page.insert_image(page.rect, stream=scan.getvalue())
    doc.save(pdf)
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "dpi": 72})
        sid = r.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "Summarise page 2."})
    assert not r.is_error, r.content
    pages = {p["page"]: p for p in r.structured_content["pages"]}
    assert pages[1]["method"] == "layout" and "Born-digital" in pages[1]["text"]
    assert pages[2]["method"] == "vision" and pages[2]["text"] == ANSWER
    ocr, asked = (c["body"]["messages"] for c in engine.chats)
    [page_message] = ocr
    assert [c["type"] for c in page_message["content"]] == ["image_url", "text"]
    assert not follow.is_error
    assert [m["role"] for m in asked] == ["user", "assistant", "user"]
    assert asked[0]["content"][0] == page_message["content"][0]  # the rendered page, sent again
    assert asked[1]["content"].startswith("## Page 1") and asked[2]["content"] == "Summarise page 2."


@pytest.mark.anyio
async def test_lmdeploy_gets_one_text_with_image_markers_and_tile_budgets(engine, remote_settings, media_dir):
    engine.models = [{"id": MODEL, "object": "model", "owned_by": "lmdeploy"}]
    a, b = _noise(media_dir / "a.png", seed=3), _noise(media_dir / "b.png", seed=4)
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("compare_images", {"images": [str(a), str(b)], "question": "Differences?"})
        follow = await client.call_tool("follow_up", {"session_id": r.structured_content["session_id"], "question": "Why?"})
    assert not r.is_error and not follow.is_error
    [message] = engine.chats[0]["body"]["messages"]
    text, first, second = message["content"]
    assert text["type"] == "text"
    assert text["text"].startswith("Image-1: <IMAGE_TOKEN>\nImage-2: <IMAGE_TOKEN>\nMeasured pixel differences")
    assert first["image_url"]["max_dynamic_patch"] == 6 and second["image_url"]["max_dynamic_patch"] == 6
    assert _same_pixels(first["image_url"]["url"], a) and _same_pixels(second["image_url"]["url"], b)
    assert engine.chats[1]["body"]["messages"][2] == {"role": "user", "content": "Why?"}


# ---------------------------------------------------------------- answers, usage and the engine check


@pytest.mark.anyio
async def test_engine_without_usage_gives_zero_counts_and_length_is_reported(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    engine.replies.extend([Reply(usage=None), Reply(finish="length")])
    async with Client(build_server(remote_settings)) as client:
        plain = await client.call_tool("describe_image", {"image": str(photo)})
        cut = await client.call_tool("describe_image", {"image": str(photo)})
    assert plain.structured_content["usage"] == {"prompt_tokens": 0, "image_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
    assert plain.structured_content["answer"] == ANSWER
    assert cut.structured_content["finish_reason"] == "length"


@pytest.mark.anyio
async def test_the_model_is_discovered_or_checked_against_the_engine_list(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    unset = remote_settings.with_overrides(remote_model="")
    async with Client(build_server(unset)) as client:
        found = await client.call_tool("describe_image", {"image": str(photo)})
    assert found.structured_content["model"] == MODEL
    assert engine.chats[-1]["body"]["model"] == MODEL
    wrong = remote_settings.with_overrides(remote_model="someone/other-model")
    async with Client(build_server(wrong)) as client:
        r = await client.call_tool("describe_image", {"image": str(photo)})
    assert r.is_error
    assert "MCP_VISION_REMOTE_MODEL='someone/other-model'" in r.content[0].text and MODEL in r.content[0].text
    engine.models.append({"id": "another/model", "owned_by": "vllm"})
    async with Client(build_server(unset)) as client:
        two = await client.call_tool("describe_image", {"image": str(photo)})
    assert two.is_error and "set MCP_VISION_REMOTE_MODEL" in two.content[0].text
    assert len(engine.chats) == 1  # nothing was sent to a model the engine does not serve


def test_base_url_without_v1_is_named_in_the_error(engine, remote_settings):
    root = remote_settings.with_overrides(base_url=engine.url.removesuffix("/v1"), remote_model="")
    with pytest.raises(ModelUnavailableError, match="ends in /v1"):
        RemoteBackend(root).load(Job())


# ---------------------------------------------------------------- retries and errors


@pytest.mark.anyio
async def test_retries_429_and_503_then_succeeds(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    engine.replies.extend([Reply(status=429, headers={"Retry-After": "0"}), Reply(status=503)])
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("describe_image", {"image": str(photo)})
    assert not r.is_error, r.content
    assert r.structured_content["answer"] == ANSWER
    assert len(engine.chats) == 3
    assert engine.chats[0]["body"] == engine.chats[1]["body"] == engine.chats[2]["body"]


@pytest.mark.anyio
async def test_gives_up_after_the_configured_retries(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    engine.replies.extend([Reply(status=503)] * 5)
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("describe_image", {"image": str(photo)})
        listed = await client.list_tools()
    assert r.is_error
    message = r.content[0].text
    assert "HTTP 503: The engine is busy." in message and "MCP_VISION_REMOTE_RETRIES" in message
    assert "\n" not in message and len(listed.tools) == 6
    assert len(engine.chats) == 3  # the first try and 2 retries


@pytest.mark.anyio
async def test_unreachable_engine_names_the_base_url_and_the_server_keeps_serving(media_dir):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    settings = Settings(backend="openai", base_url=url, remote_retries=1, allowed_dirs=(media_dir,))
    photo = _noise(media_dir / "p.png")
    async with Client(build_server(settings)) as client:
        r = await client.call_tool("describe_image", {"image": str(photo)})
        listed = await client.list_tools()
    assert r.is_error
    message = r.content[0].text
    assert f"MCP_VISION_BASE_URL={url}" in message and "connection refused" in message and "2 attempts" in message
    assert len(listed.tools) == 6


@pytest.mark.anyio
async def test_http_errors_carry_the_status_and_the_engines_short_message(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    engine.replies.extend([
        Reply(status=400, error={"object": "error", "message": "Image format not supported.", "code": 400}),
        Reply(status=500, error="<html><body>Internal Server Error</body></html>"),
    ])
    question = "UNIQUE-QUESTION-7731"
    async with Client(build_server(remote_settings)) as client:
        bad = await client.call_tool("describe_image", {"image": str(photo), "question": question})
        broken = await client.call_tool("describe_image", {"image": str(photo), "question": question})
    assert bad.is_error and broken.is_error
    assert "HTTP 400: Image format not supported." in bad.content[0].text
    assert "fewer or smaller images" in bad.content[0].text
    assert "HTTP 500" in broken.content[0].text and "<html>" not in broken.content[0].text
    for text in (bad.content[0].text, broken.content[0].text):
        assert question not in text and "base64" not in text  # never the request body


@pytest.mark.anyio
async def test_the_api_key_never_appears_in_errors_or_logs(engine, remote_settings, media_dir, caplog):
    caplog.set_level(logging.DEBUG)
    photo = _noise(media_dir / "p.png")
    engine.replies.extend([
        Reply(status=401, error={"error": {"message": f"Invalid API key {KEY}", "type": "auth"}}),
        Reply(status=503, error={"error": {"message": f"busy for {KEY}"}}),
        Reply(status=503, error={"error": {"message": f"busy for {KEY}"}}),
        Reply(status=503, error={"error": {"message": f"busy for {KEY}"}}),
    ])
    async with Client(build_server(remote_settings)) as client:
        refused = await client.call_tool("describe_image", {"image": str(photo)})
        busy = await client.call_tool("describe_image", {"image": str(photo)})
    unreachable = remote_settings.with_overrides(base_url=f"http://127.0.0.1:{_free_port()}/v1")
    async with Client(build_server(unreachable)) as client:
        gone = await client.call_tool("describe_image", {"image": str(photo)})
    assert refused.is_error and busy.is_error and gone.is_error
    assert "MCP_VISION_API_KEY" in refused.content[0].text and "Invalid API key ***" in refused.content[0].text
    for result in (refused, busy, gone):
        assert KEY not in result.content[0].text
    assert caplog.records, "nothing was logged"
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in repr(remote_settings) and KEY not in str(remote_settings)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "bad  image\\n size", "type": "BadRequestError"}}', "bad image size"),
        (b'{"object": "error", "message": "lmdeploy says no", "code": 400}', "lmdeploy says no"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}', "field required"),
        (b"<html>502 Bad Gateway</html>", ""),
        (b"plain words", "plain words"),
        (("x" * 1000).encode(), "x" * 297 + "..."),
    ],
)
def test_engine_messages_are_short_single_lines(body, expected):
    message = _engine_message(body, KEY)
    assert expected in message and "\n" not in message and len(message) <= 300


def test_context_overflow_is_the_error_the_service_drops_history_on(engine, remote_settings):
    engine.replies.append(Reply(status=400, error={"error": {"message": (
        "This model's maximum context length is 32768 tokens. However, you requested 33280 tokens "
        "(32768 in the messages, 512 in the completion). Please reduce the length of the messages or completion."
    )}}))
    engine.replies.append(Reply(status=400, error={"error": {"message": (
        "The decoder prompt (length 40000) is longer than the maximum model length of 32768."
    )}}))
    backend = RemoteBackend(remote_settings)
    with pytest.raises(ContextOverflowError) as first:
        backend.chat([Turn.user("hi")], Job(), max_new_tokens=512)
    assert (first.value.prompt_tokens, first.value.limit) == (32768, 32768)
    with pytest.raises(ContextOverflowError) as second:
        backend.chat([Turn.user("hi")], Job(), max_new_tokens=512)
    assert (second.value.prompt_tokens, second.value.limit) == (40000, 32768)


@pytest.mark.anyio
async def test_follow_up_that_overflows_the_engine_context_drops_the_oldest_exchange(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    overflow = {"error": {"message": "This model's maximum context length is 100 tokens. However, you requested "
                          "140 tokens (124 in the messages, 16 in the completion)."}}
    async with Client(build_server(remote_settings)) as client:
        first = await client.call_tool("describe_image", {"image": str(photo)})
        engine.replies.append(Reply(status=400, error=overflow))
        follow = await client.call_tool("follow_up", {"session_id": first.structured_content["session_id"], "question": "More?"})
    assert not follow.is_error, follow.content
    assert follow.structured_content["dropped_turns"] == 1
    assert engine.chats[-1]["body"]["messages"] == [{"role": "user", "content": "More?"}]


@pytest.mark.anyio
async def test_a_stream_that_ends_before_the_answer_is_an_error(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    engine.replies.append(Reply(finish=None, usage=None, done=False))
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("describe_image", {"image": str(photo)})
    assert r.is_error and "ended the stream before the answer was complete" in r.content[0].text


def test_an_answer_that_is_not_an_event_stream_names_its_content_type(engine, remote_settings):
    engine.replies.append(Reply(content_type="application/json"))
    with pytest.raises(ModelUnavailableError, match="Content-Type 'application/json' instead of an event stream"):
        RemoteBackend(remote_settings).chat([Turn.user("hi")], Job(), max_new_tokens=8)


def test_total_timeout_names_the_variable(engine, remote_settings):
    engine.replies.append(Reply(hang=3))
    backend = RemoteBackend(remote_settings.with_overrides(remote_timeout=0.5))
    backend.load(Job())
    started = time.monotonic()
    with pytest.raises(BusyError, match="MCP_VISION_REMOTE_TIMEOUT=0.5 s"):
        backend.chat([Turn.user("hi")], Job(), max_new_tokens=8)
    assert time.monotonic() - started < 1.5


@pytest.fixture
def tls_engine(tmp_path):
    """An engine behind TLS with a certificate from a private CA (self-signed for 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake = FakeEngine(tls=context)
    yield fake, cert
    fake.close()


def test_https_engine_checks_the_certificate(tls_engine, monkeypatch):
    fake, cert = tls_engine
    settings = Settings(backend="openai", base_url=fake.url, remote_model=MODEL, remote_retries=0)
    with pytest.raises(ModelUnavailableError, match="TLS to the remote engine at MCP_VISION_BASE_URL=https://"):
        RemoteBackend(settings).load(Job())
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how a private CA is trusted
    result = RemoteBackend(settings).chat([Turn.user("hi")], Job(), max_new_tokens=8)
    assert result.text == ANSWER and result.finish_reason == "stop"


# ---------------------------------------------------------------- cancellation and concurrency


def test_cancelling_the_job_closes_the_stream(engine, remote_settings):
    engine.replies.append(Reply(pieces=("word ",) * 2000, delay=0.01, finish="length"))
    backend = RemoteBackend(remote_settings)
    job = Job()
    results: list = []
    worker = threading.Thread(target=lambda: results.append(backend.chat([Turn.user("Talk.")], job, max_new_tokens=4000)))
    worker.start()
    _wait_for(lambda: engine.sent_pieces >= 5)
    job.stop.set()
    stopped = time.monotonic()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - stopped < 1.0
    assert engine.closed_early.wait(5), "the engine never saw the connection close"
    assert engine.finished_streams == 0 and engine.sent_pieces < 2000
    [result] = results
    assert result.finish_reason == "cancelled" and result.text.startswith("word")


def test_cancelling_while_the_engine_is_silent_returns_at_once(engine, remote_settings):
    engine.replies.append(Reply(hang=3))
    backend = RemoteBackend(remote_settings)
    backend.load(Job())
    job = Job()
    threading.Timer(0.3, job.stop.set).start()
    started = time.monotonic()
    result = backend.chat([Turn.user("hi")], job, max_new_tokens=8)
    assert result.finish_reason == "cancelled"
    assert time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_cancelling_the_tool_call_closes_the_stream(engine, remote_settings, media_dir):
    photo = _noise(media_dir / "p.png")
    engine.replies.append(Reply(pieces=("word ",) * 2000, delay=0.01))
    service = VisionService(remote_settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.describe_image, str(photo))
        while engine.sent_pieces < 5:
            await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert await anyio.to_thread.run_sync(engine.closed_early.wait, 5)
    assert engine.finished_streams == 0


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrent_calls_are_limited(engine, remote_settings, limit):
    backend = RemoteBackend(remote_settings.with_overrides(remote_concurrency=limit))
    for _ in range(3):
        engine.replies.append(Reply(delay=0.05))
    threads = [
        threading.Thread(target=backend.chat, args=([Turn.user("hi")], Job()), kwargs={"max_new_tokens": 8})
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    deadline = time.monotonic() + 5  # the engine counts a stream after its last byte, which the client may beat
    while engine.finished_streams < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.finished_streams == 3
    assert engine.max_active == limit


def test_a_batch_is_sent_at_once_and_answered_in_order(engine, remote_settings):
    backend = RemoteBackend(remote_settings.with_overrides(remote_concurrency=3))
    for _ in range(3):
        engine.replies.append(Reply(echo=True, delay=0.3))
    questions = [f"question {i}" for i in range(3)]
    results = backend.chat_batch([[Turn.user(q)] for q in questions], Job(), max_new_tokens=8)
    assert [r.text for r in results] == questions
    assert engine.max_active == 3


def test_images_are_encoded_once_while_they_live(remote_settings):
    backend = RemoteBackend(remote_settings)
    image = Image.new("RGB", (50, 40), "purple")
    turn = Turn("user", [ImagePart(image, 4), "What?"])
    first = backend.build_messages([turn])
    assert backend.build_messages([turn]) == first and len(backend._uris) == 1
    del turn, image
    import gc

    gc.collect()
    assert backend._uris == {}


# ---------------------------------------------------------------- the declared contract


def test_the_remote_engine_declares_the_whole_contract(remote_settings):
    backend = RemoteBackend(remote_settings)
    assert isinstance(backend, Backend) and not RemoteBackend.__abstractmethods__
    assert (backend.engine, backend.remote, backend.device, backend.takes_video) == ("remote", True, "remote", False)
    assert backend.parameter_counts() is None and backend.context_length is None and not backend.loaded
    assert backend.model_name == MODEL and backend.grounding_family == "internvl"


def test_context_length_and_grounding_come_from_the_served_model(engine, remote_settings):
    engine.models = [{"id": "Qwen/Qwen2.5-VL-7B-Instruct", "owned_by": "vllm", "max_model_len": 32768}]
    backend = RemoteBackend(remote_settings.with_overrides(remote_model=""))
    backend.load(Job())
    assert backend.model_name == "Qwen/Qwen2.5-VL-7B-Instruct" and backend.context_length == 32768
    assert backend.grounding_family == "qwen2_5_vl"
    engine.models = [{"id": MODEL, "owned_by": "lmdeploy"}]  # an engine that does not say
    quiet = RemoteBackend(remote_settings)
    quiet.load(Job())
    assert quiet.context_length is None and quiet.dialect == "lmdeploy"


@pytest.mark.parametrize("missing", sorted(Backend.__abstractmethods__))
def test_a_remote_engine_missing_a_member_fails_at_construction(remote_settings, missing):
    """A double (or a new engine) built on the contract cannot leave a member out and get a silent default."""
    members = {name: getattr(RemoteBackend, name) for name in Backend.__abstractmethods__ if name != missing}
    partial = type("PartialRemote", (Backend,), {"engine": "remote", "remote": True, "__init__": RemoteBackend.__init__, **members})
    with pytest.raises(TypeError, match=missing):
        partial(remote_settings)


def test_a_remote_engine_missing_a_declaration_fails_at_construction(remote_settings):
    members = {name: getattr(RemoteBackend, name) for name in Backend.__abstractmethods__}
    undeclared = type("Undeclared", (Backend,), {"engine": "remote", "__init__": RemoteBackend.__init__, **members})
    with pytest.raises(TypeError, match="does not declare remote"):
        undeclared(remote_settings)


# ---------------------------------------------------------------- no torch


def test_create_backend_picks_the_engine(remote_settings):
    assert isinstance(create_backend(remote_settings), RemoteBackend)


def test_the_server_process_never_imports_torch_with_the_remote_engine(engine, media_dir):
    """The real command over stdio, configured only by the environment, answers describe_image from
    the engine; the process never imported torch or transformers, and its debug log has no key."""
    photo = _noise(media_dir / "photo.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_VISION_")}
    env.update(
        MCP_VISION_BACKEND="openai",
        MCP_VISION_BASE_URL=engine.url,
        MCP_VISION_API_KEY=KEY,
        MCP_VISION_ALLOWED_DIRS=str(media_dir),
        MCP_VISION_LOG_LEVEL="DEBUG",
    )
    code = (
        "import sys, atexit\n"
        "heavy = ('torch', 'transformers', 'bitsandbytes', 'accelerate')\n"
        "atexit.register(lambda: sys.stderr.write('HEAVY=%s\\n' % [m for m in heavy if m in sys.modules]))\n"
        "from mcp_vision import main\n"
        "main([])\n"
    )
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "describe_image", "arguments": {"image": str(photo)}}},
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=media_dir,
    )
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
        proc.stdin.flush()
        replies: dict[int, dict] = {}
        while 2 not in replies:
            line = proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if "id" in message:
                replies[message["id"]] = message
        _, stderr = proc.communicate(timeout=60)
    finally:
        killer.cancel()
    assert 2 in replies, stderr[-2000:]
    result = replies[2]["result"]
    assert result.get("isError") is not True, result
    assert result["structuredContent"]["answer"] == ANSWER
    assert "HEAVY=[]" in stderr, stderr[-2000:]
    assert KEY not in stderr
    assert engine.chats[0]["headers"]["authorization"] == f"Bearer {KEY}"
