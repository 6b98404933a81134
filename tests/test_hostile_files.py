"""Malformed and hostile files through every tool that takes media (in-memory client, real backend on
the tiny InternVL): each is one tool error of one line, quickly, and the server keeps serving. Decoders
that crash or run out of memory inside the server's decoder processes do not take it down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mcp import Client

import mcp_vision.inputs.images
from mcp_vision.errors import InputError
from mcp_vision.inputs.sources import Media, sniff
from mcp_vision.inputs.pdf import open_pdf
from mcp_vision.server import build_server

from . import hostile

pytestmark = pytest.mark.anyio

FAST = {"max_new_tokens": 1}


def _tool_calls(bad: str, good: str) -> list[tuple[str, dict]]:
    """Every media-taking tool, with the malformed file where the media goes."""
    extra = {"describe_image": FAST, "compare_images": FAST, "video_qa": {"num_frames": 2, **FAST}}
    return [(tool, {**args, **extra.get(tool, {})}) for tool, args in hostile.media_tool_calls(bad, good)]


def _one_line_error(result) -> str:
    assert result.is_error, result.structured_content
    assert len(result.content) == 1
    text = result.content[0].text
    assert text and "\n" not in text and "Traceback" not in text
    return text


async def test_every_malformed_file_is_one_line_error_from_every_tool(settings, tiny_backend, media_dir):
    good = media_dir / "good.png"
    good.write_bytes(hostile.png())
    files: dict[str, Path] = {}
    for name, make in hostile.MALFORMED.items():
        files[name] = media_dir / name
        files[name].write_bytes(make())
    async with Client(build_server(settings, tiny_backend)) as client:
        for name, path in files.items():
            for tool, args in _tool_calls(str(path), str(good)):
                started = time.monotonic()
                result = await client.call_tool(tool, args)
                elapsed = time.monotonic() - started
                text = _one_line_error(result)
                assert f"'{path}'" in text, (tool, name, text)  # the message names the input
                assert elapsed < 10, f"{tool} took {elapsed:.1f} s on {name}"
            # The server keeps serving: a good call right after.
            ok = await client.call_tool("describe_image", {"image": str(good), "max_tiles": 1, **FAST})
            assert not ok.is_error, (name, ok.content)


@pytest.mark.parametrize("name", ["bomb.png", "bomb.gif", "bomb.heic"])
async def test_decompression_bombs_are_refused_at_once_naming_the_limit(settings, tiny_backend, media_dir, name):
    path = media_dir / name
    path.write_bytes(hostile.MALFORMED[name]())
    async with Client(build_server(settings, tiny_backend)) as client:
        for tool in ("describe_image", "ocr_document"):
            started = time.monotonic()
            key = "image" if tool == "describe_image" else "document"
            result = await client.call_tool(tool, {key: str(path)})
            assert time.monotonic() - started < 10  # the done-when bound; it takes milliseconds
            assert "pixel limit (MCP_VISION_MAX_IMAGE_PIXELS)" in _one_line_error(result)


async def test_fuzzed_pdfs_are_read_or_refused_in_one_line(settings, tiny_backend, media_dir):
    """Random byte flips of a valid PDF: MuPDF repairs some and refuses others; never anything else."""
    good = media_dir / "good.pdf"
    good.write_bytes(hostile.pdf())
    outcomes = {"read": 0, "refused": 0}
    async with Client(build_server(settings, tiny_backend)) as client:
        for seed in range(12):
            path = media_dir / f"fuzzed-{seed}.pdf"
            path.write_bytes(hostile.fuzzed_pdf(seed))
            result = await client.call_tool("ocr_document", {"document": str(path), "mode": "text_layer"})
            if result.is_error:
                _one_line_error(result)
                outcomes["refused"] += 1
            else:
                assert result.structured_content["page_count"] >= 1
                outcomes["read"] += 1
        after = await client.call_tool("ocr_document", {"document": str(good), "pages": "2"})
    assert not after.is_error and "Page 2 says hello" in after.structured_content["pages"][0]["text"]
    assert outcomes["refused"] > 0  # the flips really break some


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_heavily_fuzzed_pdfs_never_escape_as_anything_but_input_errors(isolate):
    """Many more flips, straight through the PDF reader, every page read and rendered."""
    for seed in range(40):
        data = hostile.fuzzed_pdf(seed, flips=200)
        media = Media(data=data, label="'f.pdf'", kind=sniff(data))
        try:
            doc = await open_pdf(media, isolate=isolate)
        except InputError:
            continue
        try:
            for number in range(1, min(doc.page_count, 3) + 1):
                for read in (doc.text_layer(number), doc.render(number, 20, 1_000_000)):
                    try:
                        await read
                    except InputError as exc:
                        assert "\n" not in str(exc)
        finally:
            doc.close()


async def test_a_crashing_decoder_is_a_tool_error_and_the_next_call_works(
    settings, tiny_backend, media_dir, monkeypatch
):
    good = media_dir / "good.png"
    good.write_bytes(hostile.png())
    async with Client(build_server(settings, tiny_backend)) as client:
        with monkeypatch.context() as patch:
            # The service looks the decoder up at call time; the decoder process imports this one by name.
            patch.setattr(mcp_vision.inputs.images, "decode_image", hostile.abort_decoder)
            crashed = await client.call_tool("describe_image", {"image": str(good)})
            patch.setattr(mcp_vision.inputs.images, "decode_image", hostile.exhaust_memory)
            exhausted = await client.call_tool("describe_image", {"image": str(good)})
        after = await client.call_tool("describe_image", {"image": str(good), "max_tiles": 1, **FAST})
    assert f"'{good}' crashed the decoder (SIGABRT): " in _one_line_error(crashed)
    assert f"'{good}' needed more than 3,072 MB to decode: " in _one_line_error(exhausted)
    assert not after.is_error, after.content
    assert after.structured_content["image"]["width"] == 64


async def test_with_isolation_off_malformed_files_are_still_one_line_errors(settings, tiny_backend, media_dir):
    threaded = settings.with_overrides(isolate_decoding=False)
    names = ["truncated.png", "bomb.png", "archive.pdf", "truncated.mp4", "random.bin"]
    async with Client(build_server(threaded, tiny_backend)) as client:
        for name in names:
            path = media_dir / name
            path.write_bytes(hostile.MALFORMED[name]())
            for tool, args in _tool_calls(str(path), str(path)):
                _one_line_error(await client.call_tool(tool, args))


async def test_fuzzed_pdfs_through_the_layout_step_are_read_or_refused_in_one_line(settings, tiny_backend, media_dir):
    """mode auto lays text-layer pages out with PyMuPDF Layout inside the decoder process: a damaged file is read
    (Markdown, or flat text with a note) or refused in one line, and the server keeps serving."""
    async with Client(build_server(settings, tiny_backend)) as client:
        for seed in range(6):
            path = media_dir / f"fuzzed-{seed}.pdf"
            path.write_bytes(hostile.fuzzed_pdf(seed))
            result = await client.call_tool("ocr_document", {"document": str(path), "max_new_tokens": 1, "dpi": 36})
            if result.is_error:
                _one_line_error(result)
            else:
                assert {p["method"] for p in result.structured_content["pages"]} <= {"layout", "text_layer", "vision"}
        good = media_dir / "good.pdf"
        good.write_bytes(hostile.pdf())
        after = await client.call_tool("ocr_document", {"document": str(good), "pages": "2"})
    assert not after.is_error and "Page 2 says hello" in after.structured_content["pages"][0]["text"]
