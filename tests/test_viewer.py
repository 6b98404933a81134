"""The viewer on the wire: the ui:// resource and the tools bound to it, what a host with MCP Apps gets
beyond today's result (previews named in `_meta`, readable through an unlisted, session-scoped resource)
and what a host without Apps gets (exactly today's result). The page itself runs in
test_viewer_browser.py."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.shared.exceptions import MCPError
from PIL import Image

from mcp_vision import previews, viewer
from mcp_vision.server import build_server
from mcp_vision.service import VisionService
from mcp_vision.sessions import SessionStore

from .support.remote import Reply, engine, quick_backoff, remote_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio

APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
APP_MIME = "text/html;profile=mcp-app"
CAT = "<ref>the cat</ref><box>[[100,200,500,800]]</box>"


def _png(path, size=(1600, 1000), colour=(200, 210, 220)):
    Image.new("RGB", size, colour).save(path)
    return path


async def test_the_viewer_is_a_listed_app_page_and_the_visual_tools_name_it(remote_settings):  # noqa: F811
    async with Client(build_server(remote_settings)) as client:
        listed = (await client.list_resources()).resources
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        read = await client.read_resource(viewer.URI)
        extensions = client.server_capabilities.extensions or {}
    [page] = [r for r in listed if str(r.uri) == viewer.URI]
    assert page.mime_type == APP_MIME and page.meta["ui"]["csp"] == {}
    assert "io.modelcontextprotocol/ui" in extensions
    [content] = read.contents
    assert content.mime_type == APP_MIME
    html = content.text
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert "<script>" in html and "ui/initialize" in html and "resources/read" in html
    for name in ("describe_image", "locate", "compare_images", "ocr_document", "video_qa", "follow_up"):
        assert tools[name].meta["ui"]["resourceUri"] == viewer.URI, name


def test_the_viewer_page_loads_nothing_from_elsewhere():
    html = viewer.html()
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    assert not [t for t in tags if re.search(r"\s(src|href|action|srcset)\s*=", t)], "an attribute that loads something"
    for banned in ("<link", "@import", "url(", "@font-face", "http://", "https://", "fetch(", "XMLHttpRequest", "WebSocket",
                   "innerHTML", "eval(", "new Function"):
        assert banned not in html, banned


@pytest.mark.parametrize("policy", ["declared", "none"])
async def test_with_previews_narrowed_a_host_without_apps_gets_exactly_the_plain_result(
    remote_settings, engine, media_dir, policy  # noqa: F811
):
    image = _png(media_dir / "cat.png")
    engine.replies.extend([Reply(), Reply(pieces=(CAT,))])
    service = VisionService(remote_settings.with_overrides(previews=policy))
    async with Client(build_server(service=service)) as client:
        described = await client.call_tool("describe_image", {"image": str(image)})
        located = await client.call_tool("locate", {"image": str(image), "target": "the cat"})
    assert viewer.META_KEY not in (described.meta or {}) and viewer.META_KEY not in (located.meta or {})
    assert [c.type for c in described.content] == ["text"] and [c.type for c in located.content] == ["text", "image"]
    for result in (described, located):
        assert json.loads(result.content[0].text) == result.structured_content  # the whole answer, first
    session = service.sessions.get(described.structured_content["session_id"])
    assert session.previews == {}  # nothing extra is made or kept


async def test_a_host_that_declares_nothing_still_gets_previews_by_default_in_meta_only(
    remote_settings, engine, media_dir  # noqa: F811
):
    # The Apps reference host (ext-apps basic-host 1.7.5) renders the viewer without declaring the extension.
    image = _png(media_dir / "cat.png")
    engine.replies.extend([Reply(), Reply(pieces=(CAT,))])
    async with Client(build_server(remote_settings)) as client:
        described = await client.call_tool("describe_image", {"image": str(image)})
        located = await client.call_tool("locate", {"image": str(image), "target": "the cat"})
        [shown] = located.meta[viewer.META_KEY]["images"]
        read = await client.read_resource(shown["uri"])
    assert described.meta[viewer.META_KEY]["images"][0]["width"] == 1600
    # What the model reads is unchanged: the text block with the whole answer, then locate's PNG.
    assert [c.type for c in described.content] == ["text"] and [c.type for c in located.content] == ["text", "image"]
    for result in (described, located):
        assert json.loads(result.content[0].text) == result.structured_content
        assert "mcp-vision://" not in result.content[0].text
    assert read.contents[0].mime_type == "image/jpeg"


async def test_a_host_with_apps_gets_previews_named_in_meta_and_reads_them(remote_settings, engine, media_dir):  # noqa: F811
    image = _png(media_dir / "cat.png")
    engine.replies.extend([Reply(pieces=(CAT,)), Reply(pieces=(CAT,))])
    async with Client(build_server(remote_settings), extensions=[APPS]) as client:
        plain = await client.call_tool("locate", {"image": str(image), "target": "the cat"})
        [shown] = plain.meta[viewer.META_KEY]["images"]
        read = await client.read_resource(shown["uri"])
        templates = (await client.list_resource_templates()).resource_templates
        listed = (await client.list_resources()).resources
    # The result itself is today's: the answer first, the picture after, nothing of the preview in either.
    assert [c.type for c in plain.content] == ["text", "image"]
    assert json.loads(plain.content[0].text) == plain.structured_content
    assert "preview" not in plain.content[0].text
    assert shown["uri"].startswith(f"mcp-vision://session/{plain.structured_content['session_id']}/preview/")
    assert (shown["width"], shown["height"]) == (1600, 1000)
    [content] = read.contents
    assert content.mime_type == "image/jpeg"
    picture = Image.open(io.BytesIO(base64.b64decode(content.blob)))
    assert picture.format == "JPEG" and picture.size == (1024, 640)  # downscaled, same proportions
    assert len(base64.b64decode(content.blob)) <= previews.MAX_PREVIEW_BYTES
    assert templates == [] and [str(r.uri) for r in listed] == [viewer.URI]  # never listed to the model


async def test_follow_up_names_the_sessions_previews_for_the_viewer(remote_settings, engine, media_dir):  # noqa: F811
    image = _png(media_dir / "cat.png")
    engine.replies.extend([Reply(), Reply()])
    async with Client(build_server(remote_settings)) as client:
        described = await client.call_tool("describe_image", {"image": str(image)})
        session = described.structured_content["session_id"]
        followed = await client.call_tool("follow_up", {"session_id": session, "question": "And the colour?"})
        [shown] = followed.meta[viewer.META_KEY]["images"]
        read = await client.read_resource(shown["uri"])
    assert shown["uri"] == described.meta[viewer.META_KEY]["images"][0]["uri"]  # the session's own, not a copy
    assert [c.type for c in followed.content] == ["text"]
    assert json.loads(followed.content[0].text) == followed.structured_content and followed.structured_content["turns"] == 2
    assert read.contents[0].mime_type == "image/jpeg"


async def test_reading_a_preview_reaches_only_what_a_live_session_holds(remote_settings, engine, media_dir):  # noqa: F811
    image = _png(media_dir / "cat.png")
    secret = media_dir / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    engine.replies.extend([Reply(), Reply(), Reply()])
    async with Client(build_server(remote_settings), extensions=[APPS]) as client:
        first = await client.call_tool("describe_image", {"image": str(image)})
        second = await client.call_tool("describe_image", {"image": str(image)})
        mine = first.structured_content["session_id"]
        other_key = second.meta[viewer.META_KEY]["images"][0]["uri"].rsplit("/", 1)[1]
        tries = [
            previews.uri("vs_" + "A" * 32, "p1"),  # no such session
            previews.uri(mine, "p2"),  # no such preview in this session
            previews.uri(mine, other_key + "x"),
            previews.uri(mine, "..%2F..%2Fsecret.txt"),
            previews.uri("..", "p1"),
            f"mcp-vision://session/{mine}/preview/{secret}",
            "mcp-vision://session/" + str(secret),
            "file://" + str(secret),
        ]
        errors = []
        for uri in tries:
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            errors.append(str(caught.value))
        again = await client.call_tool("describe_image", {"image": str(image)})  # still serving
    assert not again.is_error
    for uri, message in zip(tries, errors):
        assert "TOP-SECRET" not in message and str(media_dir) not in message.replace(uri, ""), (uri, message)
        assert message.count(". ") <= 1 and len(message) < 300, message  # one sentence
    assert errors[0] == errors[1] == errors[2]  # an unknown session reads the same as a missing preview


async def test_previews_end_with_their_session(remote_settings, engine, media_dir):  # noqa: F811
    image = _png(media_dir / "cat.png")
    engine.replies.extend([Reply(), Reply()])
    async with Client(build_server(remote_settings.with_overrides(max_sessions=1)), extensions=[APPS]) as client:
        first = await client.call_tool("describe_image", {"image": str(image)})
        uri = first.meta[viewer.META_KEY]["images"][0]["uri"]
        assert (await client.read_resource(uri)).contents
        await client.call_tool("describe_image", {"image": str(image)})  # a new session evicts the first
        with pytest.raises(MCPError, match="No such preview"):
            await client.read_resource(uri)


@pytest.mark.parametrize("mode", ["legacy", "modern"])  # the 2025-11-25 handshake, and the 2026-07-28 protocol
async def test_a_text_layer_page_gets_a_preview_too(remote_settings, media_dir, mode):  # noqa: F811
    import pymupdf

    doc = pymupdf.open()
    for n in (1, 2):
        doc.new_page(width=595, height=842).insert_text((72, 72), f"Page {n} says exactly this sentence.")
    (media_dir / "doc.pdf").write_bytes(doc.tobytes())
    handshake = {"mode": "legacy"} if mode == "legacy" else {}
    async with Client(build_server(remote_settings), extensions=[APPS], **handshake) as client:
        read = await client.call_tool("ocr_document", {"document": str(media_dir / "doc.pdf")})
        pages = read.meta[viewer.META_KEY]["pages"]
        picture = await client.read_resource(pages["2"]["uri"])
    assert [p["method"] for p in read.structured_content["pages"]] == ["layout", "layout"]
    assert sorted(pages) == ["1", "2"] and read.content[0].type == "text"
    assert Image.open(io.BytesIO(base64.b64decode(picture.contents[0].blob))).size == (595, 842)  # 72 dpi


def test_previews_are_bounded_per_session_and_over_all_sessions():
    store = SessionStore(max_preview_bytes=250, max_preview_total=400)
    a, b = store.create(), store.create()
    keys = [store.keep_preview(a, bytes(100)) for _ in range(3)]
    assert list(a.previews) == keys[1:]  # 300 > 250: the oldest went
    store.keep_preview(b, bytes(150))
    assert a.preview_bytes + b.preview_bytes <= 400 and len(b.previews) == 1
    store.keep_preview(b, bytes(1000))  # over every bound alone: kept (the newest always stays), others go
    assert list(b.previews.values()) == [bytes(1000)] and a.previews == {}
    with pytest.raises(Exception, match="No such preview"):
        store.preview(a.id, keys[0])


def test_a_preview_is_small_whatever_the_picture():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    data = previews.encode(noise, previews.IMAGE_SIDE, max_bytes=200_000)
    shown = Image.open(io.BytesIO(data))
    assert len(data) <= 200_000 and max(shown.size) <= previews.IMAGE_SIDE
    assert abs(shown.size[0] / shown.size[1] - 4 / 3) < 0.01
    tiny = previews.encode(Image.new("L", (20, 10)), previews.IMAGE_SIDE)
    assert Image.open(io.BytesIO(tiny)).size == (20, 10)  # never upscaled
