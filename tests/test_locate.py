"""locate and region end to end: the arithmetic exactly through the real server with a stub OpenAI engine
answering a fixed grounded sentence, and the tool on the tiny InternVL (random weights: usually no boxes,
and it must not fail)."""

from __future__ import annotations

import base64
import io

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.server import build_server

from .support.remote import Reply, engine, quick_backoff, remote_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio

CAT = "<ref>the cat</ref><box>[[100,200,500,800]]</box>"


def _sent_images(engine) -> list[Image.Image]:  # noqa: F811 - the fixture's value
    images = []
    for request in engine.requests:
        for message in (request.get("body") or {}).get("messages", []):
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    images.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return images


def _png(media_dir, size=(451, 300), name="cat.png"):
    path = media_dir / name
    Image.new("RGB", size, (240, 240, 240)).save(path)
    return path


async def test_boxes_land_in_original_pixels_with_and_without_a_region(engine, remote_settings, media_dir):  # noqa: F811
    image = _png(media_dir)
    engine.replies.extend([Reply(pieces=(CAT,)), Reply(pieces=(CAT,))])
    async with Client(build_server(remote_settings)) as client:
        whole = await client.call_tool("locate", {"image": str(image), "target": "the cat"})
        zoomed = await client.call_tool(
            "locate", {"image": str(image), "target": "the cat", "region": {"x": 100, "y": 50, "width": 200, "height": 200}}
        )
    assert not whole.is_error, whole.content[0].text
    [box] = whole.structured_content["boxes"]
    assert box["label"] == "the cat" and (box["x"], box["y"]) == (45, 60)
    assert abs(box["width"] - 180) <= 1 and box["height"] == 180
    assert box["center"] == {"x": box["x"] + box["width"] // 2, "y": box["y"] + box["height"] // 2}
    assert "original image" in whole.structured_content["coordinate_frame"]
    [zoom] = zoomed.structured_content["boxes"]
    assert (zoom["x"], zoom["y"], zoom["width"], zoom["height"]) == (120, 90, 80, 120)
    assert zoomed.structured_content["region"] == {"x": 100, "y": 50, "width": 200, "height": 200}
    sent = _sent_images(engine)
    assert [im.size for im in sent[-1:]] == [(200, 200)]  # the engine saw the crop, not the whole image
    # The text block comes first and holds the whole answer; then the PNG with the box drawn.
    assert whole.content[0].type == "text" and '"boxes"' in whole.content[0].text
    assert whole.content[1].type == "image" and whole.content[1].mime_type == "image/png"
    drawn = Image.open(io.BytesIO(base64.b64decode(whole.content[1].data))).convert("RGB")
    assert drawn.size == (451, 300)
    assert drawn.getpixel((45, 150)) != (240, 240, 240)  # on the box's left edge
    assert drawn.getpixel((135, 150)) == (240, 240, 240)  # inside, untouched


async def test_out_of_range_and_malformed_boxes_are_counted_not_errors(engine, remote_settings, media_dir):  # noqa: F811
    image = _png(media_dir)
    answer = "<ref>a</ref><box>[[0,0,1200,50]]</box> and <ref>b</ref><box>[[1,2,3]]</box> and nothing else"
    engine.replies.append(Reply(pieces=(answer,)))
    async with Client(build_server(remote_settings)) as client:
        result = await client.call_tool("locate", {"image": str(image), "annotate": False})
    assert not result.is_error, result.content[0].text
    assert result.structured_content["boxes"] == [] and result.structured_content["dropped_boxes"] == 2
    assert [c.type for c in result.content] == ["text"]  # annotate: false: no picture


async def test_a_region_outside_the_image_is_one_error(engine, remote_settings, media_dir):  # noqa: F811
    image = _png(media_dir)
    async with Client(build_server(remote_settings)) as client:
        for tool in ("locate", "describe_image", "ocr_document"):
            key = "document" if tool == "ocr_document" else "image"
            result = await client.call_tool(
                tool, {key: str(image), "region": {"x": 400, "y": 0, "width": 100, "height": 100}}
            )
            assert result.is_error and "falls outside the 451x300 image" in result.content[0].text, tool
    assert _sent_images(engine) == []  # nothing reached the engine


async def test_describe_and_ocr_read_the_region_only(engine, remote_settings, media_dir):  # noqa: F811
    image = _png(media_dir, size=(800, 600))
    engine.replies.extend([Reply(), Reply()])
    region = {"x": 10, "y": 20, "width": 300, "height": 100}
    async with Client(build_server(remote_settings)) as client:
        described = await client.call_tool("describe_image", {"image": str(image), "region": region})
        read = await client.call_tool("ocr_document", {"document": str(image), "region": region})
    assert not described.is_error and not read.is_error, (described.content[0].text, read.content[0].text)
    assert described.structured_content["region"] == region and read.structured_content["region"] == region
    assert [im.size for im in _sent_images(engine)] == [(300, 100), (300, 100)]


async def test_compare_adds_a_picture_of_the_changed_regions(settings, tiny_backend, media_dir):
    base = Image.new("RGB", (320, 240), "white")
    after = base.copy()
    after.paste((200, 20, 20), (100, 80, 180, 140))
    base.save(media_dir / "a.png")
    after.save(media_dir / "b.png")
    async with Client(build_server(settings, tiny_backend)) as client:
        result = await client.call_tool("compare_images", {"images": [str(media_dir / "a.png"), str(media_dir / "b.png")]})
        plain = await client.call_tool(
            "compare_images", {"images": [str(media_dir / "a.png"), str(media_dir / "b.png")], "annotate": False}
        )
    assert not result.is_error, result.content[0].text
    assert [c.type for c in result.content] == ["text", "image"] and [c.type for c in plain.content] == ["text"]
    [region] = result.structured_content["diffs"][0]["regions"]
    drawn = Image.open(io.BytesIO(base64.b64decode(result.content[1].data))).convert("RGB")
    assert drawn.size == (320, 240)
    edge = drawn.getpixel((region["x"], region["y"] + region["height"] // 2))
    assert edge not in {(255, 255, 255), (200, 20, 20)}  # the outline's colour, on the region's left edge


async def test_locate_on_the_local_model_answers_and_follow_up_continues(settings, tiny_backend, media_dir):
    image = _png(media_dir, size=(640, 480))
    async with Client(build_server(settings, tiny_backend)) as client:
        found = await client.call_tool("locate", {"image": str(image), "target": "the button", "max_new_tokens": 16})
        assert not found.is_error, found.content[0].text
        data = found.structured_content
        assert isinstance(data["boxes"], list) and data["image"] == {"width": 640, "height": 480, "format": "PNG"}
        for box in data["boxes"]:  # random weights rarely write a box; any that appears is inside the image
            assert 0 <= box["x"] < 640 and 0 <= box["y"] < 480
        everything = await client.call_tool("locate", {"image": str(image), "max_new_tokens": 8})
        assert not everything.is_error, everything.content[0].text
        follow = await client.call_tool("follow_up", {"session_id": data["session_id"], "question": "Where is it?"})
    assert not follow.is_error and follow.structured_content["turns"] == 2


async def test_boxes_are_in_the_upright_frame_of_an_exif_rotated_photo(engine, remote_settings, media_dir):  # noqa: F811
    """A camera JPEG stored 300x451 with EXIF orientation 6 (rotate 90) is read upright, 451x300: boxes are
    in that frame, the one the image is shown in."""
    stored = Image.new("RGB", (300, 451), (240, 240, 240))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = media_dir / "photo.jpg"
    stored.save(path, format="JPEG", exif=exif.tobytes())
    engine.replies.append(Reply(pieces=(CAT,)))
    async with Client(build_server(remote_settings)) as client:
        result = await client.call_tool("locate", {"image": str(path), "target": "the cat", "annotate": False})
    assert not result.is_error, result.content[0].text
    assert result.structured_content["image"]["width"] == 451 and result.structured_content["image"]["height"] == 300
    [box] = result.structured_content["boxes"]
    assert (box["x"], box["y"], box["height"]) == (45, 60, 180) and abs(box["width"] - 180) <= 1
    assert [im.size for im in _sent_images(engine)] == [(451, 300)]
