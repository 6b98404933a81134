"""The real command over stdio: the SDK's client against a subprocess, and the raw byte stream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from PIL import Image

from .servers import server_env

pytestmark = pytest.mark.anyio


def _env(model_dir: Path, media: Path, **extra: str) -> dict[str, str]:
    return server_env(model_dir, media, MCP_VISION_MAX_NEW_TOKENS="4", MCP_VISION_MAX_TILES="2", **extra)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_describe_image_over_stdio(tiny_model_dir, media_dir, mode):
    image = media_dir / "photo.jpg"
    Image.new("RGB", (500, 300), "orange").save(image)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_vision"],
        env=_env(tiny_model_dir, media_dir),
        cwd=str(media_dir),
    )
    async with Client(params, mode=mode) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} >= {"describe_image", "ocr_document", "compare_images", "video_qa"}
        ok = await client.call_tool("describe_image", {"image": "photo.jpg"})  # relative to the server's cwd
        bad = await client.call_tool("describe_image", {"image": "nothing-here.png"})
        sid = ok.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "What else?"})
    assert not ok.is_error, ok.content
    assert ok.structured_content["image"]["width"] == 500
    assert bad.is_error and "does not exist" in bad.content[0].text
    assert not follow.is_error and follow.structured_content["session_id"] == sid


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_client_roots_over_stdio_say_where_to_read_unless_directories_are_configured(tmp_path, media_dir, mode):
    import pymupdf
    from mcp_types import ListRootsResult, Root

    project, other = media_dir / "project", media_dir / "other"
    for d in (project, other):
        d.mkdir()
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), f"This page of the {d.name} folder has a real text layer.")
        (d / "doc.pdf").write_bytes(doc.tobytes())

    async def list_roots(_context):
        return ListRootsResult(roots=[Root(uri=project.as_uri(), name="project")])

    configured = _env(tmp_path / "no-model", media_dir)
    unset = {k: v for k, v in configured.items() if k != "MCP_VISION_ALLOWED_DIRS"}
    outcomes = {}
    for name, env in (("configured", configured), ("unset", unset)):
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_vision"], env=env, cwd=str(media_dir))
        async with Client(params, mode=mode, list_roots_callback=list_roots) as client:
            inside = await client.call_tool("ocr_document", {"document": "project/doc.pdf"})
            assert not inside.is_error and "the project folder" in inside.structured_content["pages"][0]["text"]
            outcomes[name] = await client.call_tool("ocr_document", {"document": "other/doc.pdf"})
    assert not outcomes["configured"].is_error  # the user's directories: the client's roots change nothing
    refused = outcomes["unset"]
    assert refused.is_error and "outside the client's roots" in refused.content[0].text


@pytest.mark.parametrize("isolate", ["1", "0"])
def test_stdout_carries_only_json_rpc(tiny_model_dir, media_dir, isolate):
    """Loading torch, transformers and bitsandbytes (which log on CPU), and MuPDF complaining about a
    broken PDF (in a decoder worker, or in the server itself), must not leak onto stdout."""
    import pymupdf

    Image.new("RGB", (64, 64), "white").save(media_dir / "w.png")
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "A page that will be damaged.")
    good = doc.tobytes()
    # Break the cross-reference table and cut the tail: MuPDF repairs it and says so.
    (media_dir / "broken.pdf").write_bytes(good.replace(b"xref", b"xrfe")[: len(good) - 40])
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "describe_image", "arguments": {"image": str(media_dir / "w.png")},
            "_meta": {"progressToken": "p1"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "describe_image", "arguments": {"image": str(media_dir / "missing.png")}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "ocr_document", "arguments": {"document": str(media_dir / "broken.pdf"), "mode": "text_layer"}}},
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_vision"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(
            tiny_model_dir, media_dir, MCP_VISION_QUANTIZATION="nf4", MCP_VISION_LOG_LEVEL="DEBUG",
            MCP_VISION_ISOLATE_DECODING=isolate,
        ),
    )
    for request in requests:
        proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    stdout_lines: list[str] = []
    answered: set[int] = set()
    deadline = time.monotonic() + 300
    while answered != {1, 2, 3, 4, 5} and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        stdout_lines.append(line)
        message = json.loads(line)  # any stray output fails here
        if "id" in message:
            answered.add(message["id"])
    # communicate() closes stdin: end of input, the server exits
    rest, stderr = proc.communicate(timeout=60)
    stdout_lines += rest.splitlines()
    lines = [line for line in stdout_lines if line.strip()]
    messages = [json.loads(line) for line in lines]  # any stray output fails here
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert set(by_id) == {1, 2, 3, 4, 5}, stderr[-2000:]
    assert by_id[3]["result"].get("isError") is not True, by_id[3]
    assert by_id[4]["result"]["isError"] is True
    assert "result" in by_id[5]  # repaired and read, or one clear error: either way an answer, on stdout only
    assert any(m.get("method") == "notifications/progress" for m in messages)
    assert "loaded" in stderr  # the log went to stderr
