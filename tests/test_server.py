"""The tools through the SDK's in-memory client, with the real backend on the tiny InternVL."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.server import build_server
from mcp_vision.settings import Settings

pytestmark = pytest.mark.anyio

TOOLS = {"describe_image", "follow_up", "ocr_document", "compare_images", "video_qa", "locate"}


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _png(path: Path, size=(320, 200), color="red") -> Path:
    Image.new("RGB", size, color).save(path)
    return path


async def test_lists_every_tool_with_schemas_and_annotations(settings):
    async with Client(build_server(settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.output_schema and tool.output_schema.get("type") == "object"
        assert tool.title and tool.description
        assert tool.annotations and tool.annotations.read_only_hint is True
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
    assert tools["describe_image"].input_schema["required"] == ["image"]
    assert set(tools["follow_up"].input_schema["required"]) == {"session_id", "question"}


async def test_describe_image_answers_with_structured_result(settings, tiny_backend, media_dir):
    image = _png(media_dir / "red.png")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    async with Client(build_server(settings, tiny_backend)) as client:
        result = await client.call_tool("describe_image", {"image": str(image)}, progress_callback=on_progress)
    assert not result.is_error, result.content
    data = result.structured_content
    assert isinstance(data["answer"], str)
    assert data["session_id"].startswith("vs_") and len(data["session_id"]) >= 27
    assert data["model"] == settings.model
    assert data["image"] == {"width": 320, "height": 200, "format": "PNG"}
    # 320x200 within a 4-tile budget: the stock processor picks a 2x1 grid plus a thumbnail.
    assert data["tiles"] == 3
    assert data["usage"]["image_tokens"] == 3 * 256
    assert data["usage"]["prompt_tokens"] > data["usage"]["image_tokens"]
    assert 1 <= data["usage"]["output_tokens"] <= settings.max_new_tokens
    assert data["finish_reason"] in {"stop", "length"}
    assert progress, "no progress notification was sent"
    assert data["answer"] in result.content[0].text or result.content[0].text


async def test_describe_then_follow_ups_keep_the_session(settings, tiny_backend, media_dir):
    image = _png(media_dir / "blue.jpg", color="blue")
    async with Client(build_server(settings, tiny_backend)) as client:
        first = await client.call_tool("describe_image", {"image": str(image), "question": "What colour is it?"})
        sid = first.structured_content["session_id"]
        second = await client.call_tool("follow_up", {"session_id": sid, "question": "Is it a photo?"})
        third = await client.call_tool("follow_up", {"session_id": sid, "question": "Any text?", "max_new_tokens": 4})
    assert not second.is_error and not third.is_error, (second.content, third.content)
    assert second.structured_content["session_id"] == sid == third.structured_content["session_id"]
    assert second.structured_content["turns"] == 2 and third.structured_content["turns"] == 3
    # The image (and the earlier turns) are in every follow-up's prompt.
    first_usage = first.structured_content["usage"]
    assert third.structured_content["usage"]["image_tokens"] == first_usage["image_tokens"]
    assert third.structured_content["usage"]["prompt_tokens"] > second.structured_content["usage"]["prompt_tokens"]
    assert third.structured_content["usage"]["output_tokens"] <= 4


async def test_sessions_are_isolated(settings, tiny_backend, media_dir):
    a, b = _png(media_dir / "a.png"), _png(media_dir / "b.png", size=(900, 300))
    async with Client(build_server(settings, tiny_backend)) as client:
        ra = await client.call_tool("describe_image", {"image": str(a)})
        rb = await client.call_tool("describe_image", {"image": str(b)})
        fa = await client.call_tool("follow_up", {"session_id": ra.structured_content["session_id"], "question": "?"})
    assert ra.structured_content["session_id"] != rb.structured_content["session_id"]
    assert fa.structured_content["usage"]["image_tokens"] == ra.structured_content["usage"]["image_tokens"]


async def test_data_uri_and_file_uri_inputs(settings, tiny_backend, media_dir):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    path = _png(media_dir / "g.png", size=(64, 48), color="green")
    async with Client(build_server(settings, tiny_backend)) as client:
        r1 = await client.call_tool("describe_image", {"image": uri, "max_tiles": 1})
        r2 = await client.call_tool("describe_image", {"image": path.as_uri(), "max_tiles": 1})
    assert not r1.is_error and not r2.is_error
    assert r1.structured_content["image"]["width"] == 64 and r1.structured_content["tiles"] == 1
    # Same pixels, same greedy answer.
    assert r1.structured_content["answer"] == r2.structured_content["answer"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: str(d / "missing.png"), "does not exist"),
        (lambda d: _write(d / "corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "corrupt"),
        (lambda d: _write(d / "notes.txt", b"hello, I am text"), "not an image"),
        (lambda d: _write(d / "doc.png", b"%PDF-1.7\n%\xe2\xe3\n"), "ocr_document"),
        (lambda d: "/etc/hostname", "outside the allowed directories"),
        (lambda d: "gopher://example.com/x", "unsupported scheme"),
    ],
    ids=["missing", "corrupt", "text", "pdf-named-png", "outside", "scheme"],
)
async def test_bad_inputs_are_tool_errors_and_the_server_keeps_serving(settings, tiny_backend, media_dir, make, expected):
    good = _png(media_dir / "ok.png", size=(64, 64))
    async with Client(build_server(settings, tiny_backend)) as client:
        bad = await client.call_tool("describe_image", {"image": make(media_dir)})
        after = await client.call_tool("describe_image", {"image": str(good), "max_tiles": 1})
    assert bad.is_error
    message = bad.content[0].text
    assert expected in message
    assert "Traceback" not in message and message.count("\n") == 0
    assert not after.is_error


async def test_unknown_session_is_an_error(settings, tiny_backend):
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("follow_up", {"session_id": "vs_doesnotexist", "question": "and?"})
    assert r.is_error and "start a new session" in r.content[0].text


async def test_out_of_range_arguments_are_rejected(settings, tiny_backend, media_dir):
    image = _png(media_dir / "x.png")
    async with Client(build_server(settings, tiny_backend)) as client:
        too_many_tiles = await client.call_tool("describe_image", {"image": str(image), "max_tiles": 9})
        zero_tokens = await client.call_tool("describe_image", {"image": str(image), "max_new_tokens": 0})
    assert too_many_tiles.is_error and "MCP_VISION_MAX_TILES" in too_many_tiles.content[0].text
    assert zero_tokens.is_error



async def test_missing_model_names_the_variable_and_server_keeps_serving(media_dir, tmp_path):
    image = _png(media_dir / "m.png")
    settings = Settings(model="someone/not-a-cached-model", allowed_dirs=(media_dir,))
    async with Client(build_server(settings)) as client:
        first = await client.call_tool("describe_image", {"image": str(image)})
        again = await client.call_tool("describe_image", {"image": str(image)})
        listed = await client.list_tools()
    assert first.is_error and "MCP_VISION_MODEL" in first.content[0].text
    assert "not available offline" in first.content[0].text
    assert again.is_error and len(listed.tools) == len(TOOLS)


async def test_directory_that_is_not_a_model(media_dir, tmp_path):
    image = _png(media_dir / "m.png")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    settings = Settings(model=str(empty), allowed_dirs=(media_dir,))
    async with Client(build_server(settings)) as client:
        r = await client.call_tool("describe_image", {"image": str(image)})
    assert r.is_error and "MCP_VISION_MODEL" in r.content[0].text


async def test_tool_descriptions_are_dedented(settings):
    async with Client(build_server(settings)) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        assert "\n " not in tool.description, tool.name
