"""Every tool end to end on tiny random-weight Qwen2-VL and Qwen2.5-VL: the in-memory client with the
real backend, and one stdio server chosen by MCP_VISION_MODEL alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from PIL import Image

from mcp_vision.server import build_server
from mcp_vision.settings import Settings

from .conftest import QWEN_FAMILIES
from .servers import server_env
from .support.documents import sentences_pdf
from .support.media import mp4

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("family", QWEN_FAMILIES)]


def _settings(tiny_qwen_dirs, family: str, media_dir: Path) -> Settings:
    return Settings(
        model=str(tiny_qwen_dirs[family]), device="cpu", quantization="none", dtype="float32",
        allowed_dirs=(media_dir,), max_new_tokens=8, max_tiles=4,
    )


async def test_every_tool_answers(tiny_qwen_dirs, tiny_qwen_backends, media_dir, family):
    settings = _settings(tiny_qwen_dirs, family, media_dir)
    photo, other = media_dir / "photo.png", media_dir / "other.png"
    Image.new("RGB", (640, 400), "red").save(photo)
    Image.new("RGB", (640, 400), "blue").save(other)
    clip = mp4(media_dir / "clip.mp4", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)])
    pdf = sentences_pdf(media_dir / "scan.pdf", scanned_page=True)
    async with Client(build_server(settings, tiny_qwen_backends[family])) as client:
        described = await client.call_tool("describe_image", {"image": str(photo)})
        sid = described.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "What colour is it?"})
        compared = await client.call_tool("compare_images", {"images": [str(photo), str(other)]})
        video = await client.call_tool("video_qa", {"video": str(clip), "question": "What changes?", "num_frames": 4})
        video_follow = await client.call_tool(
            "follow_up", {"session_id": video.structured_content["session_id"], "question": "And last?"}
        )
        ocr = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "3-4", "dpi": 72, "max_new_tokens": 8})
        scans = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "4", "mode": "vision", "dpi": 72,
                                                        "max_new_tokens": 8})
        located = await client.call_tool("locate", {"image": str(photo), "target": "the red square"})
    for result in (described, follow, compared, video, video_follow, ocr, scans, located):
        assert not result.is_error, result.content
    data = described.structured_content
    assert data["model"] == settings.model and data["image"]["width"] == 640
    assert data["tiles"] >= 1 and data["usage"]["image_tokens"] > 0
    # The follow-up computed only its new tokens: the described image's KV prefix was reused.
    assert follow.structured_content["usage"]["cached_tokens"] >= data["usage"]["prompt_tokens"]
    assert follow.structured_content["turns"] == 2
    assert len(compared.structured_content["diffs"]) == 1 and len(compared.structured_content["tiles"]) == 2
    frames = video.structured_content["frames"]
    assert [f["index"] for f in frames] == [1, 2, 3, 4]
    assert [f["timestamp"] for f in frames] == sorted(f["timestamp"] for f in frames)
    assert video_follow.structured_content["usage"]["cached_tokens"] > 0
    methods = {p["page"]: p["method"] for p in ocr.structured_content["pages"]}
    assert methods == {3: "layout", 4: "vision"}
    assert scans.structured_content["pages"][0]["method"] == "vision"
    assert located.structured_content["coordinate_frame"] and isinstance(located.structured_content["boxes"], list)


async def test_locate_reads_the_family_s_box_syntax(tiny_qwen_dirs, tiny_qwen_backends, media_dir, family, monkeypatch):
    """The loaded family's grounding syntax is the one parsed; Qwen2.5-VL's pixels are of the resized input."""
    backend = tiny_qwen_backends[family]
    photo = media_dir / "wide.png"
    Image.new("RGB", (1000, 500), "white").save(photo)  # the processor resizes it to 1008 x 504 (28 px multiples)
    answers = {
        "qwen2_vl": "<|object_ref_start|>box<|object_ref_end|><|box_start|>(100,200),(500,600)<|box_end|>",
        "qwen2_5_vl": '```json\n[{"bbox_2d": [100.8, 100.8, 504, 302.4], "label": "box"}]\n```',
    }
    chat = backend.chat

    def answering(turns, job, **kwargs):
        from dataclasses import replace

        return replace(chat(turns, job, **kwargs), text=answers[family])

    monkeypatch.setattr(backend, "chat", answering)
    async with Client(build_server(_settings(tiny_qwen_dirs, family, media_dir), backend)) as client:
        located = await client.call_tool("locate", {"image": str(photo), "target": "box"})
    assert not located.is_error, located.content
    (box,) = located.structured_content["boxes"]
    # Both answers mark the same region: x 10%..50%, y 20%..60% of the image (Qwen2.5-VL's 504 px is half of
    # the 1008 px input; read as pixels of the 1000 px original it would be wider).
    assert (box["x"], box["y"], box["width"], box["height"]) == (100, 100, 400, 200), (family, box)


async def test_the_checkpoint_alone_selects_the_family_over_stdio(tiny_qwen_dirs, media_dir, family):
    image = media_dir / "photo.jpg"
    Image.new("RGB", (500, 300), "orange").save(image)
    env = server_env(tiny_qwen_dirs[family], media_dir, MCP_VISION_MAX_NEW_TOKENS="4", MCP_VISION_MAX_TILES="2")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_vision"], env=env, cwd=str(media_dir))
    async with Client(params) as client:
        ok = await client.call_tool("describe_image", {"image": "photo.jpg"})
        follow = await client.call_tool("follow_up", {"session_id": ok.structured_content["session_id"], "question": "?"})
    assert not ok.is_error, ok.content
    assert not follow.is_error and follow.structured_content["usage"]["cached_tokens"] > 0
