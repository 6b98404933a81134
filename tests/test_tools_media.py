"""compare_images and video_qa end to end: the in-memory client, the real backend on the tiny InternVL,
images and videos built here (ocr_document's are in test_ocr.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from PIL import Image, ImageDraw

from mcp_vision.server import build_server

from .support.media import mp4

pytestmark = pytest.mark.anyio


def _before_after(media_dir: Path) -> tuple[Path, Path]:
    base = Image.new("RGB", (640, 480), (230, 230, 230))
    draw = ImageDraw.Draw(base)
    for x in range(0, 640, 40):
        draw.line([(x, 0), (x, 479)], fill=(180, 180, 200))
    after = base.copy()
    ImageDraw.Draw(after).rectangle([200, 150, 300, 230], fill=(220, 30, 30))
    a, b = media_dir / "before.png", media_dir / "after.png"
    base.save(a)
    after.save(b)
    return a, b


async def test_compare_finds_the_drawn_rectangle(settings, tiny_backend, media_dir):
    a, b = _before_after(media_dir)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("compare_images", {"images": [str(a), str(b)]})
        same = await client.call_tool("compare_images", {"images": [str(a), str(a)]})
    assert not r.is_error, r.content
    diff = r.structured_content["diffs"][0]
    assert diff["image"] == 2 and diff["similarity"] < 1.0
    assert len(diff["regions"]) == 1
    box = diff["regions"][0]
    assert box["x"] <= 200 and box["y"] <= 150
    assert box["x"] + box["width"] >= 300 and box["y"] + box["height"] >= 230
    assert box["width"] < 100 + 40 and box["height"] < 80 + 40
    assert r.structured_content["session_id"].startswith("vs_")
    assert same.structured_content["diffs"][0]["similarity"] == 1.0
    assert same.structured_content["diffs"][0]["regions"] == []


async def test_compare_needs_two_to_four_images(settings, tiny_backend, media_dir):
    a, _ = _before_after(media_dir)
    async with Client(build_server(settings, tiny_backend)) as client:
        one = await client.call_tool("compare_images", {"images": [str(a)]})
        five = await client.call_tool("compare_images", {"images": [str(a)] * 5})
    assert one.is_error and five.is_error


async def test_video_qa_samples_frames_with_ascending_timestamps(settings, tiny_backend, media_dir):
    clip = mp4(media_dir / "clip.mp4", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)])
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("video_qa", {"video": str(clip), "question": "What changes?", "num_frames": 4})
        sid = r.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "And the last frame?"})
    assert not r.is_error, r.content
    data = r.structured_content
    assert [f["index"] for f in data["frames"]] == [1, 2, 3, 4]
    stamps = [f["timestamp"] for f in data["frames"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert 3.5 <= data["duration"] <= 4.5
    assert data["usage"]["image_tokens"] == 4 * 256  # one tile per frame
    assert not follow.is_error


async def test_video_qa_reads_an_animated_gif_and_refuses_text(settings, tiny_backend, media_dir):
    gif = media_dir / "anim.gif"
    frames = [Image.new("RGB", (80, 60), c) for c in ("red", "green", "blue")]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=300, loop=0)
    text = media_dir / "notes.txt"
    text.write_text("just words")
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("video_qa", {"video": str(gif), "num_frames": 3})
        bad = await client.call_tool("video_qa", {"video": str(text)})
    assert not r.is_error, r.content
    assert len(r.structured_content["frames"]) == 3
    assert bad.is_error and "\n" not in bad.content[0].text


