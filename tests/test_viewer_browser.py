"""The viewer in a real browser: headless Chromium loads a harness page that plays the host's side of the
Apps protocol, with real tool results (locate through a stub engine with fixed boxes; compare, OCR of a
two-page PDF, video and describe on the tiny InternVL) and the previews the server answered. The checks
are what a person would see: boxes and regions at the right pixels (from the DOM and from a screenshot),
every page and frame shown, no console error, no request leaving the page.

Without Chromium these tests skip with the reason, except in CI (`CI` set), where .ci/run installs it
and a missing browser fails. `MCP_VISION_UPDATE_SCREENSHOTS=1` copies each tool's screenshot to docs/.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.extension import advertise
from PIL import Image

from mcp_vision import viewer
from mcp_vision.server import build_server

from .browser import Browser, Page, file_url, find_chromium
from .support.media import before_after
from .support.remote import Reply, engine, quick_backoff, remote_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio

APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
HARNESS = Path(__file__).parent / "data" / "viewer_host.html"
DOCS = Path(__file__).parent.parent / "docs"
BOX_COLOUR = (255, 20, 147)  # the viewer's --box
CHANGE_COLOUR = (255, 106, 0)  # --change
REGION_COLOUR = (30, 136, 255)  # --region
BACKGROUND = (236, 238, 240)

# The stub engine's grounded answer: two boxes, 0-1000 of the image shown.
LOCATE_ANSWER = "<ref>the button</ref><box>[[100,200,500,800]]</box> and <ref>the logo</ref><box>[[700,50,950,250]]</box>"
LOCATE_SIZE = (1280, 800)


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium); .ci/run installs it")
    launched = Browser(executable)
    yield launched
    launched.close()


# ---------------------------------------------------------------------------------------------- scenes


def _preview_uris(media: dict) -> list[str]:
    entries = [*media.get("images", []), *media.get("frames", []), *media.get("pages", {}).values()]
    return [entry["uri"] for entry in entries]


async def _scene(client: Client, tool: str, arguments: dict) -> dict:
    """A tool's real result as the host hands it to the view, the viewer page as the server serves it, and
    the server's answer to resources/read for each preview the result names."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["content"][0]["type"] == "text"  # the answer leads, as for every host
    read = await client.read_resource(viewer.URI)
    html = read.contents[0].text
    resources = {}
    for uri in _preview_uris(wire.get("_meta", {}).get(viewer.META_KEY, {})):
        answer = await client.read_resource(uri)
        resources[uri] = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"tool": tool, "arguments": arguments, "result": wire, "resources": resources, "html": html}


def _wait_sized(page: Page, timeout: float = 15.0) -> None:
    """Until the host has sized the view's frame to the view's own height. The view reports it (size-changed)
    after it renders, a message that can arrive after `initialized`: a screenshot taken before it shows the
    frame at its first 200 px (seen on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        own = page.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)", frame="#app")
        shown = page.evaluate("Math.round(document.querySelector('iframe').getBoundingClientRect().height)")
        if abs(own - shown) <= 1:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the host never sized the view's frame to the view: {shown} px shown of {own} px")
        time.sleep(0.05)


def _show(browser: Browser, scene: dict, tmp_path: Path, name: str, docs: bool = True) -> tuple[Page, dict, Image.Image]:
    """Load the scene in a fresh tab; wait until every preview shown has loaded; return the page, the
    layout read back from the view's DOM (viewport pixels) and a screenshot of the whole harness."""
    page_file = tmp_path / f"{name}-host.html"
    embedded = json.dumps(scene).replace("</", "<\\/")
    page_file.write_text(HARNESS.read_text(encoding="utf-8").replace("__SCENE__", embedded), encoding="utf-8")
    page = browser.new_page()
    page.navigate(file_url(page_file))
    page.wait_for("document.getElementById('app') && document.getElementById('app').dataset.state === 'ready'", frame="#app")
    page.wait_for("window.host.initialized")
    _wait_sized(page)
    height = page.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
    page.resize(1000, max(200, int(height)))
    page.wait_for("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
    offset = page.evaluate("(() => { const r = document.querySelector('iframe').getBoundingClientRect(); return [r.left, r.top]; })()")
    layout = page.evaluate(LAYOUT, frame="#app")
    for stage in layout["stages"]:  # into the harness's (the screenshot's) pixels
        stage["rect"] = _moved(stage["rect"], offset)
        for mark in stage["marks"]:
            mark["rect"] = _moved(mark["rect"], offset)
    shot = page.screenshot()
    (tmp_path / f"{name}.png").write_bytes(shot)
    if docs and os.environ.get("MCP_VISION_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / f"{name}.png", DOCS / f"viewer-{name}.png")
    return page, layout, Image.open(io.BytesIO(shot)).convert("RGB")


LAYOUT = """(() => {
  const rect = (n) => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  return {
    state: document.getElementById('app').dataset.state,
    text: document.body.innerText,
    stages: [...document.querySelectorAll('.stage')].map((s) => {
      const img = s.querySelector('img');
      const holder = s.closest('[data-page], [data-frame], [data-image]');
      return {
        rect: rect(s), width: +s.dataset.width, height: +s.dataset.height, loaded: s.dataset.loaded || null,
        natural: img ? [img.naturalWidth, img.naturalHeight] : null, uri: img ? img.dataset.uri : null,
        page: holder && holder.dataset.page ? +holder.dataset.page : null,
        frame: holder && holder.dataset.frame ? +holder.dataset.frame : null,
        image: holder && holder.dataset.image ? +holder.dataset.image : null,
        caption: holder ? holder.innerText : null,
        method: holder && holder.querySelector('[data-method]') ? holder.querySelector('[data-method]').dataset.method : null,
        marks: [...s.querySelectorAll('.mark')].map((m) => ({ kind: m.dataset.kind, rect: rect(m),
          text: m.innerText })),
      };
    }),
  };
})()"""


def _moved(rect: list[float], offset: list[float]) -> list[float]:
    return [rect[0] + offset[0], rect[1] + offset[1], rect[2], rect[3]]


# ---------------------------------------------------------------------------------------------- checks


def _in_original_pixels(stage: dict, mark: dict) -> tuple[float, float, float, float]:
    """Where a mark is drawn, read back from the page, in pixels of the original image."""
    left, top, width, height = stage["rect"]
    sx, sy = stage["width"] / width, stage["height"] / height
    x, y, w, h = mark["rect"]
    return ((x - left) * sx, (y - top) * sy, w * sx, h * sy)


def _assert_drawn_at(stage: dict, mark: dict, expected: tuple[int, int, int, int], what: str) -> None:
    """The mark covers exactly `expected` (x, y, width, height in original pixels), to one screen pixel."""
    tolerance = max(1.0, stage["width"] / stage["rect"][2]) + 0.5
    drawn = _in_original_pixels(stage, mark)
    for axis, got, want in zip(("x", "y", "width", "height"), drawn, expected):
        assert abs(got - want) <= tolerance, f"{what}: drawn at {axis}={got:.1f}, expected {want} (+-{tolerance:.1f}) in {drawn}"


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def _assert_outlined(shot: Image.Image, mark: dict, colour: tuple[int, int, int], inside: tuple[int, int, int] | None, what: str) -> None:
    """On the screenshot: the outline's colour at the middle of each edge (1 px in), and, when given, the
    picture's own colour a few pixels further in."""
    x, y, w, h = mark["rect"]
    # The middle of each 2 px border; a border lands on whole pixels, so a pixel either side may hold it.
    edges = {"left": (x + 1, y + h / 2, 1, 0), "right": (x + w - 1, y + h / 2, 1, 0),
             "top": (x + w / 2, y + 1, 0, 1), "bottom": (x + w / 2, y + h - 1, 0, 1)}
    for edge, (px, py, dx, dy) in edges.items():
        near = [shot.getpixel((int(px) + k * dx, int(py) + k * dy)) for k in (-1, 0, 1)]
        assert any(_near(pixel, colour) for pixel in near), (
            f"{what}: the {edge} edge at ({int(px)}, {int(py)}) of the screenshot is {near}, not the outline {colour}"
        )
    if inside is not None:
        px, py = x + 8, y + h / 2
        pixel = shot.getpixel((int(px), int(py)))
        assert _near(pixel, inside, 24), f"{what}: inside the outline at ({int(px)}, {int(py)}) is {pixel}, expected the picture {inside}"


def _assert_clean(page: Page, scene: dict) -> None:
    """No console error or warning, no exception; nothing asked of the network but the harness itself and
    data: URIs; the view asked the host for exactly the previews the result names; the protocol was kept."""
    assert page.console == [], page.console
    harness = [url for url in page.requests if url.startswith("file://")]
    leaving = [url for url in page.requests if not url.startswith(("data:", "about:")) and url not in harness[:1]]
    assert leaving == [], f"requests left the page: {leaving}"
    host = page.evaluate("window.host")
    assert host["errors"] == [], host["errors"]
    assert sorted(host["reads"]) == sorted(scene["resources"]), (host["reads"], list(scene["resources"]))
    assert host["received"][:2] == ["ui/initialize", "ui/notifications/initialized"], host["received"]
    lines = page.evaluate("document.body.innerText", frame="#app").splitlines()
    assert not {"null", "undefined", "[object Object]"} & {line.strip() for line in lines}, lines  # nothing unfilled shows


def _expected_boxes(answer: str, size: tuple[int, int]) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The stub's boxes in original pixels, computed here from its 0-1000 coordinates, not by the server."""
    import re

    found = []
    for label, x1, y1, x2, y2 in re.findall(r"<ref>(.*?)</ref><box>\[\[(\d+),(\d+),(\d+),(\d+)\]\]</box>", answer):
        left, top = round(int(x1) * size[0] / 1000), round(int(y1) * size[1] / 1000)
        right, bottom = round(int(x2) * size[0] / 1000), round(int(y2) * size[1] / 1000)
        found.append((label, (left, top, right - left, bottom - top)))
    return found


def _check_locate(layout: dict, shot: Image.Image, expected: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    [stage] = layout["stages"]
    assert stage["loaded"] == "1" and stage["natural"][0] > 0
    boxes = [m for m in stage["marks"] if m["kind"] == "box"]
    assert len(boxes) == len(expected)
    for mark, (label, where) in zip(boxes, expected):
        assert label in mark["text"]
        _assert_drawn_at(stage, mark, where, f"box {label!r}")
        _assert_outlined(shot, mark, BOX_COLOUR, BACKGROUND, f"box {label!r}")


# ---------------------------------------------------------------------------------------------- media


def _locate_image(path: Path) -> Path:
    """A mock screen: a button and a logo well inside where the stub's boxes fall (the checks read the plain
    background just inside each outline)."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", LOCATE_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=56)
    draw.rounded_rectangle((170, 420, 600, 560), radius=18, fill=(0, 110, 220))
    draw.text((385, 490), "Submit", fill="white", font=font, anchor="mm")
    draw.ellipse((930, 70, 1030, 170), fill=(245, 130, 48))
    draw.text((1050, 120), "ACME", fill=(60, 60, 60), font=font, anchor="lm")
    for row in range(3):
        draw.rounded_rectangle((170, 200 + row * 70, 600, 250 + row * 70), radius=6, outline=(150, 150, 150), width=2)
    return path if image.save(path) is None else path


def _two_page_pdf(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page(width=595, height=842).insert_text((72, 96), "Invoice 42: total due 1,234.56 EUR by 30 June.", fontsize=14)
    from PIL import ImageDraw, ImageFont

    scanned = Image.new("RGB", (600, 840), (250, 250, 245))
    draw = ImageDraw.Draw(scanned)
    draw.text((60, 60), "Delivery note 7", fill=(40, 40, 40), font=ImageFont.load_default(size=40))
    for line in range(8):
        draw.text((60, 150 + line * 48), f"Item {line + 1} ........ {3 * line + 2} pcs", fill=(70, 70, 70), font=ImageFont.load_default(size=26))
    scan = io.BytesIO()
    scanned.save(scan, "PNG")
    doc.new_page(width=595, height=842).insert_image(pymupdf.Rect(40, 40, 555, 802), stream=scan.getvalue())
    path.write_bytes(doc.tobytes())
    return path


VIDEO_COLOURS = ((220, 30, 30), (30, 200, 60), (40, 60, 220), (230, 200, 30))


def _video(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for colour in VIDEO_COLOURS:
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), colour, np.uint8), format="rgb24")
            for _ in range(10):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---------------------------------------------------------------------------------------------- tests


async def test_locate_boxes_are_drawn_on_their_pixels(browser, engine, remote_settings, media_dir, tmp_path):  # noqa: F811
    image = _locate_image(media_dir / "screen.png")
    engine.replies.append(Reply(pieces=(LOCATE_ANSWER,)))
    async with Client(build_server(remote_settings), extensions=[APPS]) as client:
        scene = await _scene(client, "locate", {"image": str(image), "target": "the button"})
    expected = _expected_boxes(LOCATE_ANSWER, LOCATE_SIZE)
    got = [(b["label"], (b["x"], b["y"], b["width"], b["height"])) for b in scene["result"]["structuredContent"]["boxes"]]
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (_, have), (_, want) in zip(got, expected):
        assert all(abs(a - b) <= 1 for a, b in zip(have, want)), (have, want)
    page, layout, shot = _show(browser, scene, tmp_path, "locate")
    assert layout["stages"][0]["natural"][0] <= 1024 < LOCATE_SIZE[0]  # a downscaled preview, not the original
    assert layout["stages"][0]["rect"][2] < LOCATE_SIZE[0]  # shown smaller than the original, too
    _check_locate(layout, shot, expected)
    for label, (x, y, w, h) in expected:  # the numbers a person reads beside the picture
        assert f"{x}" in layout["text"] and label in layout["text"]
    # Hovering a box shows its numbers.
    button = next(m for m in layout["stages"][0]["marks"] if m["kind"] == "box")
    x, y, w, h = button["rect"]
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x + w / 2, "y": y + h / 2})
    tip = page.wait_for("(() => { const t = document.getElementById('tip'); return t.style.display === 'block' && t.textContent; })()", frame="#app")
    (bx, by, bw, bh) = expected[0][1]
    assert f"the button: x {bx}, y {by}, {bw}×{bh}" in tip, tip
    _assert_clean(page, scene)

    # The check is not blind: the same page handed a box 24 px off is caught.
    shifted = copy.deepcopy(scene)
    shifted["result"]["structuredContent"]["boxes"][0]["x"] += 24
    _, moved_layout, moved_shot = _show(browser, shifted, tmp_path, "locate-shifted", docs=False)
    with pytest.raises(AssertionError, match="box 'the button'"):
        _check_locate(moved_layout, moved_shot, expected)


async def test_compare_outlines_the_measured_changes_side_by_side(browser, settings, tiny_backend, media_dir, tmp_path):
    before_after(media_dir)
    async with Client(build_server(settings, tiny_backend), extensions=[APPS]) as client:
        scene = await _scene(client, "compare_images", {"images": [str(media_dir / "before.png"), str(media_dir / "after.png")], "annotate": False})
    data = scene["result"]["structuredContent"]
    regions = data["diffs"][0]["regions"]
    assert len(regions) == 2
    page, layout, shot = _show(browser, scene, tmp_path, "compare")
    stages = sorted(layout["stages"], key=lambda s: s["image"])
    assert [s["image"] for s in stages] == [1, 2] and all(s["loaded"] == "1" for s in stages)
    assert stages[0]["rect"][1] == pytest.approx(stages[1]["rect"][1], abs=1)  # side by side
    assert stages[0]["marks"] == []
    for mark, region in zip(stages[1]["marks"], regions):
        where = (region["x"], region["y"], region["width"], region["height"])
        _assert_drawn_at(stages[1], mark, where, f"changed region {where}")
        _assert_outlined(shot, mark, CHANGE_COLOUR, None, f"changed region {where}")
    assert f"similarity {data['diffs'][0]['similarity'] * 100:.1f}%" in stages[1]["caption"]
    _assert_clean(page, scene)


async def test_ocr_shows_every_page_beside_its_text_and_method(browser, settings, tiny_backend, media_dir, tmp_path):
    pdf = _two_page_pdf(media_dir / "invoice.pdf")
    async with Client(build_server(settings, tiny_backend), extensions=[APPS]) as client:
        scene = await _scene(client, "ocr_document", {"document": str(pdf), "dpi": 40})
    pages = scene["result"]["structuredContent"]["pages"]
    assert [(p["page"], p["method"]) for p in pages] == [(1, "layout"), (2, "vision")]
    page, layout, shot = _show(browser, scene, tmp_path, "ocr")
    shown = {s["page"]: s for s in layout["stages"]}
    assert sorted(shown) == [1, 2]
    for number, method in ((1, "layout"), (2, "vision")):
        stage = shown[number]
        assert stage["loaded"] == "1" and stage["natural"][0] > 0 and stage["method"] == method
        assert stage["uri"] == scene["result"]["_meta"][viewer.META_KEY]["pages"][str(number)]["uri"]
    assert "Invoice 42: total due 1,234.56 EUR" in shown[1]["caption"]
    assert "text layer" in shown[1]["caption"] and "read by the model" in shown[2]["caption"]
    assert "pages read 2 of 2" in layout["text"]
    # Page 1's one line of text sits beside a thumbnail, not beside a full-height page of white.
    assert shown[1]["rect"][2] <= 200.5 and shown[1]["rect"][3] <= 300, shown[1]["rect"]
    _assert_clean(page, scene)


# A page as a hostile document (or a model misled by one) could write it: every way markup might run or load.
HOSTILE_PAGE = "\n".join([
    '# Quarterly <img src=x onerror="window.pwned=1">',
    "<script>window.pwned = 2</script>",
    'Click [here](javascript:window.pwned=3) or <a href="javascript:window.pwned=4">there</a>.',
    '<iframe srcdoc="<script>parent.pwned=5</script>"></iframe><svg onload="window.pwned=6"></svg>',
    "",
    "| Item | Price |",
    "|---|---|",
    '| <b onmouseover="window.pwned=7">Lamp</b> | **12** |',
    "",
    '<table><tr><th colspan="2" onclick="window.pwned=8"><img src=x onerror="window.pwned=9">Merged</th></tr>',
    "<tr><td>A</td><td>B<script>window.pwned=10</script></td></tr></table>",
    "",
    "- first item",
    "- second <style>body { display: none }</style>",
    "",
    '> *Figure, described by the model:* a chart <img src=x onerror="window.pwned=11">',
])

HOSTILE_CHECK = """(() => {
  const md = [...document.querySelectorAll('[data-part=page-text]')];
  const all = [...document.querySelectorAll('*')];
  return {
    pwned: window.pwned === undefined ? null : window.pwned,  // the host's frame (cross-origin) is asked apart
    made: md.flatMap((n) => [...n.querySelectorAll('script, img, iframe, svg, a, style, object, embed, link, form')])
      .map((n) => n.tagName),
    handlers: all.filter((n) => [...n.attributes].some((a) => a.name.toLowerCase().startsWith('on'))).map((n) => n.tagName),
    heading: (document.querySelector('[data-part=page-text] h3') || {}).textContent || null,
    tables: [...document.querySelectorAll('[data-part=md-table]')].map((t) =>
      [...t.rows].map((r) => [...r.cells].map((c) => [c.tagName, c.textContent, c.colSpan]))),
    items: [...document.querySelectorAll('[data-part=page-text] li')].map((n) => n.textContent),
    quote: (document.querySelector('[data-part=page-text] blockquote') || {}).textContent || null,
    text: md.map((n) => n.innerText).join('\\n'),
  };
})()"""


async def test_page_markdown_shows_as_headings_and_tables_and_never_runs(browser, engine, remote_settings, media_dir,  # noqa: F811
                                                                        tmp_path):
    from .support.documents import scanned_pdf

    pdf = media_dir / "hostile.pdf"
    pdf.write_bytes(scanned_pdf([(300, 400)]))
    engine.replies.append(Reply(pieces=(HOSTILE_PAGE,)))
    async with Client(build_server(remote_settings), extensions=[APPS]) as client:
        scene = await _scene(client, "ocr_document", {"document": str(pdf), "dpi": 40})
    [read] = scene["result"]["structuredContent"]["pages"]
    assert read["method"] == "vision" and read["text"] == HOSTILE_PAGE  # the page text is the document's, as it came
    page, layout, shot = _show(browser, scene, tmp_path, "ocr-hostile", docs=False)
    seen = page.evaluate(HOSTILE_CHECK, frame="#app")
    assert seen["pwned"] is None and page.evaluate("window.pwned === undefined")  # nothing ran, in either frame
    assert seen["made"] == [] and seen["handlers"] == []  # no element and no handler came from the document
    assert seen["heading"] == 'Quarterly <img src=x onerror="window.pwned=1">'  # a heading, its markup as text
    pipe, html = seen["tables"]
    assert pipe == [[["TH", "Item", 1], ["TH", "Price", 1]],
                    [["TD", '<b onmouseover="window.pwned=7">Lamp</b>', 1], ["TD", "12", 1]]]
    assert html == [[["TH", "Merged", 2]], [["TD", "A", 1], ["TD", "Bwindow.pwned=10", 1]]]
    assert seen["items"] == ["first item", "second <style>body { display: none }</style>"]
    assert seen["quote"] == 'Figure, described by the model: a chart <img src=x onerror="window.pwned=11">'

    assert "<script>window.pwned = 2</script>" in seen["text"] and "javascript:window.pwned=3" in seen["text"]
    _assert_clean(page, scene)  # no console error, and no request left the page (the img src=x never loaded)


async def test_video_frames_are_a_strip_with_their_timestamps(browser, settings, tiny_backend, media_dir, tmp_path):
    video = _video(media_dir / "clip.mp4")
    async with Client(build_server(settings, tiny_backend), extensions=[APPS]) as client:
        scene = await _scene(client, "video_qa", {"video": str(video), "num_frames": 4})
    data = scene["result"]["structuredContent"]
    page, layout, shot = _show(browser, scene, tmp_path, "video")
    frames = sorted((s for s in layout["stages"] if s["frame"]), key=lambda s: s["frame"])
    assert [s["frame"] for s in frames] == [f["index"] for f in data["frames"]] == [1, 2, 3, 4]
    for stage, frame, colour in zip(frames, data["frames"], VIDEO_COLOURS):
        assert stage["loaded"] == "1"
        assert f"Frame {frame['index']} · {frame['timestamp']:.2f} s" in stage["caption"]
        x, y, w, h = stage["rect"]
        assert _near(shot.getpixel((int(x + w / 2), int(y + h / 2))), colour), (frame, shot.getpixel((int(x + w / 2), int(y + h / 2))))
    assert [s["rect"][1] for s in frames] == [frames[0]["rect"][1]] * 4  # one row
    assert data["answer"] in layout["text"] or data["answer"].strip() in layout["text"]
    _assert_clean(page, scene)


async def test_describe_shows_the_image_the_region_and_the_numbers(browser, settings, tiny_backend, media_dir, tmp_path):
    from PIL import ImageDraw

    image = media_dir / "photo.png"
    picture = Image.new("RGB", (900, 600), (120, 170, 220))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 420, 900, 600), fill=(90, 150, 80))
    draw.ellipse((520, 170, 680, 330), fill=(250, 210, 60))
    draw.polygon([(80, 420), (260, 200), (440, 420)], fill=(110, 110, 120))
    picture.save(image)
    region = {"x": 450, "y": 120, "width": 300, "height": 240}
    async with Client(build_server(settings, tiny_backend), extensions=[APPS]) as client:
        scene = await _scene(client, "describe_image", {"image": str(image), "region": region})
    data = scene["result"]["structuredContent"]
    page, layout, shot = _show(browser, scene, tmp_path, "describe")
    [stage] = layout["stages"]
    [mark] = stage["marks"]
    assert mark["kind"] == "region" and stage["loaded"] == "1"
    _assert_drawn_at(stage, mark, (450, 120, 300, 240), "region")
    x, y, w, h = mark["rect"]
    assert _near(shot.getpixel((int(x + 1), int(y + 4))), REGION_COLOUR)  # the dashed edge starts with a dash
    for shown in (data["model"], f"prompt tokens {data['usage']['prompt_tokens']}", f"output tokens {data['usage']['output_tokens']}"):
        assert shown in layout["text"]
    _assert_clean(page, scene)


# ---------------------------------------------------------------------------------------------- hosts


def _small_picture(path: Path, size: tuple[int, int] = (451, 300)) -> Path:
    from PIL import ImageDraw

    picture = Image.new("RGB", size, (120, 170, 220))
    ImageDraw.Draw(picture).rectangle((40, 40, size[0] // 2, size[1] // 2), fill=(250, 210, 60))
    picture.save(path)
    return path


STYLED = """(() => {
  const body = getComputedStyle(document.body);
  const answer = getComputedStyle(document.querySelector('.answer'));
  const img = document.querySelector('.stage img');
  const r = img.getBoundingClientRect();
  return { background: body.backgroundColor, colour: body.color, font: body.fontFamily, radius: answer.borderTopLeftRadius,
           fonts: (document.getElementById('host-fonts') || {}).textContent || null,
           shown: [r.width, r.height], natural: [img.naturalWidth, img.naturalHeight] };
})()"""


async def test_the_viewer_takes_the_hosts_style_and_never_upscales(browser, engine, remote_settings, media_dir, tmp_path):  # noqa: F811
    image = _small_picture(media_dir / "small.png")
    engine.replies.extend([Reply(), Reply()])
    async with Client(build_server(remote_settings)) as client:  # a host that declares nothing, like basic-host
        scene = await _scene(client, "describe_image", {"image": str(image)})
    # Its own look first: the viewer's palette and fonts; the 451x300 picture at 451x300 in a 960 px frame.
    page, layout, _ = _show(browser, scene, tmp_path, "small-own", docs=False)
    own = page.evaluate(STYLED, frame="#app")
    assert own["background"] == "rgb(255, 255, 255)" and "system-ui" in own["font"] and own["fonts"] is None
    assert own["natural"] == [451, 300] and own["shown"] == pytest.approx([451, 300], abs=0.5), own
    _assert_clean(page, scene)

    styled = copy.deepcopy(scene)
    styled["hostContext"] = {
        "theme": "dark",
        "styles": {"variables": {"--color-background-primary": "rgb(10, 20, 30)", "--color-text-primary": "rgb(250, 240, 230)",
                                 "--font-sans": "\"Host Sans\", serif", "--border-radius-md": "11px"},
                   "css": {"fonts": "/* the host's font faces */"}},
        "containerDimensions": {"width": 960, "maxHeight": 250},
    }
    page, layout, shot = _show(browser, styled, tmp_path, "small-host", docs=False)
    got = page.evaluate(STYLED, frame="#app")
    assert got["background"] == "rgb(10, 20, 30)" and got["colour"] == "rgb(250, 240, 230)", got
    assert got["font"].startswith('"Host Sans"') and got["radius"] == "11px" and got["fonts"] == "/* the host's font faces */"
    assert shot.getpixel((5, 5)) == (10, 20, 30)  # what a person sees: the host's background
    # The container allows 250 px: the picture keeps to 80% of it, in proportion.
    assert got["shown"][1] <= 200.5 and got["shown"][0] == pytest.approx(got["shown"][1] * 451 / 300, abs=1), got
    _assert_clean(page, styled)


async def test_without_previews_the_results_own_picture_or_one_line_why(browser, engine, remote_settings, media_dir, tmp_path):  # noqa: F811
    image = _locate_image(media_dir / "screen.png")
    engine.replies.extend([Reply(pieces=(LOCATE_ANSWER,)), Reply()])
    async with Client(build_server(remote_settings.with_overrides(previews="none"))) as client:
        located = await _scene(client, "locate", {"image": str(image), "target": "the button"})
        described = await _scene(client, "describe_image", {"image": str(image)})
    assert located["resources"] == {} and described["resources"] == {}
    page, layout, _ = _show(browser, located, tmp_path, "locate-fallback", docs=False)
    [stage] = layout["stages"]
    assert stage["loaded"] == "1" and stage["natural"][0] > 0 and stage["marks"] == []  # the PNG, boxes drawn in it
    assert "picture in the result" in layout["text"] and "No preview" not in layout["text"]
    _assert_clean(page, located)
    page, layout, _ = _show(browser, described, tmp_path, "describe-no-previews", docs=False)
    assert layout["stages"] == [] and "No preview" not in layout["text"]
    [line] = [t for t in layout["text"].splitlines() if t.startswith("No pictures")]
    assert "MCP_VISION_PREVIEWS" in line
    _assert_clean(page, described)


async def test_compare_tags_stay_on_the_picture_and_a_whole_image_change_is_said(browser, engine, remote_settings, media_dir, tmp_path):  # noqa: F811
    before = Image.new("RGB", (640, 400), (255, 255, 255))
    band = before.copy()
    band.paste((200, 20, 20), (0, 0, 200, 400))  # from the top edge to the bottom edge: no room above or below
    black = Image.new("RGB", (640, 400), (0, 0, 0))
    for name, picture in (("before", before), ("band", band), ("black", black)):
        picture.save(media_dir / f"{name}.png")
    engine.replies.append(Reply())
    async with Client(build_server(remote_settings)) as client:
        scene = await _scene(client, "compare_images", {"images": [str(media_dir / f"{n}.png") for n in ("before", "band", "black")]})
    diffs = scene["result"]["structuredContent"]["diffs"]
    assert [len(d["regions"]) for d in diffs] == [1, 1]
    page, layout, _ = _show(browser, scene, tmp_path, "compare-edges", docs=False)
    stages = sorted(layout["stages"], key=lambda s: s["image"])
    [tagged] = stages[1]["marks"]
    tags = page.evaluate("[...document.querySelectorAll('.tag')].map((t) => { const r = t.getBoundingClientRect(); "
                         "return [r.left, r.top, r.width, r.height]; })", frame="#app")
    frame = page.evaluate("(() => { const r = document.querySelector('iframe').getBoundingClientRect(); return [r.left, r.top]; })()")
    [(left, top, width, height)] = tags
    left, top = left + frame[0], top + frame[1]
    sx, sy, sw, sh = stages[1]["rect"]
    # On the picture, so off the caption below it ("1mage 2" was a tag over the caption's first letter).
    assert sy <= top and top + height <= sy + sh and sx - 3 <= left and left + width <= sx + sw, (tags, stages[1]["rect"])
    assert tagged["kind"] == "change"
    assert stages[2]["marks"] == []  # the whole image changed: no outline framing the picture
    assert "the whole image changed" in stages[2]["caption"] and "1 changed region(s)" in stages[1]["caption"]
    _assert_clean(page, scene)


async def test_follow_up_shows_the_answer_and_the_sessions_media(browser, engine, remote_settings, media_dir, tmp_path):  # noqa: F811
    image = _small_picture(media_dir / "small.png")
    engine.replies.extend([Reply(), Reply()])
    async with Client(build_server(remote_settings)) as client:
        described = await client.call_tool("describe_image", {"image": str(image)})
        scene = await _scene(client, "follow_up", {"session_id": described.structured_content["session_id"], "question": "More?"})
    data = scene["result"]["structuredContent"]
    page, layout, _ = _show(browser, scene, tmp_path, "follow-up", docs=False)
    [stage] = layout["stages"]
    assert stage["loaded"] == "1" and stage["natural"] == [451, 300]
    assert data["answer"].strip() in layout["text"] and "The session's media" in layout["text"]
    _assert_clean(page, scene)
