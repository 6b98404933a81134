"""The viewer in a web MCP Apps host built on ext-apps' published host bridge (AppBridge) and the official
TypeScript MCP client (.ci/apps-host/, pinned by its package-lock.json; host.js says why it is not
basic-host itself). The real server runs on streamable HTTP with the host's origin allowed
(`MCP_VISION_CORS_ORIGINS`); the host, served on loopback with its sandbox proxy on a second origin,
connects to it from the page, calls each visual tool and hands the view the result; headless Chromium shows
it. The checks are what a person would see: every picture loaded (no "No preview" box), boxes, regions and
changed areas at the pixels the numbers say (read from the rendered DOM and the screenshot), the host's
fonts taken, no console error, no request leaving loopback.

The answers come from the stub OpenAI-compatible engine (tests/support/remote.py), so locate's boxes are
known. Without Node.js, the built host or Chromium these tests skip and say what to run; under CI (`CI`
set), where .ci/run installs and builds all three, they fail instead. `MCP_VISION_UPDATE_SCREENSHOTS=1`
copies each tool's screenshot to docs/apps-host-<tool>.png.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from mcp_vision import viewer

from . import servers
from .support.media import before_after
from .support.remote import KEY, MODEL, FakeEngine, Reply
from .test_viewer_browser import (
    BACKGROUND,
    BOX_COLOUR,
    CHANGE_COLOUR,
    LAYOUT,
    LOCATE_ANSWER,
    LOCATE_SIZE,
    REGION_COLOUR,
    VIDEO_COLOURS,
    _assert_drawn_at,
    _assert_outlined,
    _expected_boxes,
    _locate_image,
    _moved,
    _near,
    _two_page_pdf,
    _video,
)

ROOT = Path(__file__).resolve().parent.parent
HOST_DIR = ROOT / ".ci" / "apps-host"
DOCS = ROOT / "docs"
VIEW = "#app"  # the viewer's root: names the view's frame, two frames down (host > sandbox proxy > view)

pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (under CI too, where .ci/run installs and builds it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def host_build() -> Path:
    """The built host: Node.js, the pinned packages installed by `npm ci`, and dist/ from `npm run build`."""
    build = "npm ci --prefix .ci/apps-host && npm run --prefix .ci/apps-host build"
    if not shutil.which("node"):
        _missing("Node.js is not installed; the MCP Apps host is served by it (Node >= 20)")
    pinned = json.loads((HOST_DIR / "package.json").read_text())["dependencies"]["@modelcontextprotocol/ext-apps"]
    installed = HOST_DIR / "node_modules" / "@modelcontextprotocol" / "ext-apps" / "package.json"
    if not installed.exists():
        _missing(f"the MCP Apps host's packages are not installed: run `{build}`")
    version = json.loads(installed.read_text())["version"]
    if version != pinned:
        _missing(f"ext-apps {version} is installed, not the pinned {pinned}: run `{build}`")
    built = HOST_DIR / "dist" / "host.js"
    if not built.exists():
        _missing(f"the MCP Apps host is not built: run `{build}`")
    sources = [HOST_DIR / name for name in ("host.js", "index.html", "sandbox.html")]
    if max(source.stat().st_mtime for source in sources) > built.stat().st_mtime:
        _missing(f"the MCP Apps host's build is older than its sources: run `{build}`")
    return HOST_DIR


@pytest.fixture(scope="module")
def chromium():
    from .browser import Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        _missing("headless Chromium is not installed (apt-get install chromium)")
    launched = Browser(executable, loopback=True)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def stub():
    engine = FakeEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("apps-host-media")
    _locate_image(d / "screen.png")
    _two_page_pdf(d / "invoice.pdf")
    _video(d / "clip.mp4")
    photo = Image.new("RGB", (900, 600), (120, 170, 220))
    photo.paste((250, 210, 60), (520, 170, 680, 330))
    photo.save(d / "photo.png")
    before_after(d)
    return d


@pytest.fixture(scope="module")
def apps_host(host_build, stub, media, tmp_path_factory):
    """The host and its sandbox proxy on two loopback origins, and the server on streamable HTTP allowing
    exactly the host's origin; yields the page's URL and the server's log."""
    logs = tmp_path_factory.mktemp("apps-host-logs")
    serve = subprocess.Popen(["node", str(host_build / "serve.mjs")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = serve.stdout.readline()
        assert line.startswith("{"), f"the host did not start: {line}{serve.stdout.read() if serve.poll() is not None else ''}"
        origins = json.loads(line)
        env = servers.server_env(
            "unused", media, MCP_VISION_BACKEND="openai", MCP_VISION_BASE_URL=stub.url, MCP_VISION_API_KEY=KEY,
            MCP_VISION_REMOTE_MODEL=MODEL, MCP_VISION_CORS_ORIGINS=origins["host"],
        )
        with servers.http_server(env, media, logs / "server.log") as (port, _proc):
            yield {"url": f"{origins['host']}/?server=http://127.0.0.1:{port}/mcp", "log": logs / "server.log", **origins}
    finally:
        serve.terminate()
        serve.wait(10)


@pytest.fixture
def tabs(chromium):
    """New tabs, closed after the test: an open host page holds its streams to the server, and Chromium
    opens at most six connections to one host, so a seventh page would wait."""
    opened = []

    def new_page(width: int = 1000, height: int = 900):
        opened.append(chromium.new_page(width, height))
        return opened[-1]

    yield new_page
    for page in opened:
        page.close()


def _call(tabs, apps_host, tool: str, arguments: dict, name: str | None, page=None):
    """Call `tool` from the host (a fresh host page unless `page` is given) and wait until its view shows
    every picture; return the page, what the server answered, the view's layout (in the screenshot's
    pixels) and the screenshot (copied to docs/apps-host-`name`.png when asked)."""
    if page is None:
        page = tabs()
        page.navigate(apps_host["url"])
    ready = page.wait_for("window.appsHost", timeout=60)
    assert ready["ready"] is True and "locate" in ready["tools"], ready
    answer = page.evaluate(f"window.appsHost.call({json.dumps(tool)}, {json.dumps(arguments)})", timeout=120)
    assert answer["view"] is True and answer["isError"] is False, answer
    page.wait_for("document.getElementById('app') && document.getElementById('app').dataset.state === 'ready'", frame=VIEW, timeout=60)
    layout, shot = _look(page, 1000)
    if name and os.environ.get("MCP_VISION_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shot.save(DOCS / f"apps-host-{name}.png")
    return page, answer, layout, shot


def _look(page, width: int):
    """The window `width` px wide and as tall as the host's cards (the screenshot ends with the last); the
    newest view's layout moved into the screenshot's pixels (host page > sandbox proxy's frame > view's frame)."""
    for _ in range(2):  # the view reflows to the width, the host sets its frame's height to what it reports
        page.resize(width, 3000)  # tall enough that every view is on screen (one off it gets no frames drawn)
        page.wait_for("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))", frame=VIEW)
        height = page.evaluate("Math.ceil(document.getElementById('calls').getBoundingClientRect().bottom)")
        page.resize(width, max(300, int(height)))
        page.wait_for("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))", frame=VIEW)
    outer = page.evaluate("(() => { const f = [...document.querySelectorAll('iframe.app')].pop(); const r = f.getBoundingClientRect(); "
                          "return [r.left + f.clientLeft, r.top + f.clientTop]; })()")
    inner = page.evaluate("(() => { const r = document.querySelector('iframe').getBoundingClientRect(); return [r.left, r.top]; })()",
                          frame="#sandbox")
    offset = [outer[0] + inner[0], outer[1] + inner[1]]
    layout = page.evaluate(LAYOUT, frame=VIEW)
    for stage in layout["stages"]:
        stage["rect"] = _moved(stage["rect"], offset)
        for mark in stage["marks"]:
            mark["rect"] = _moved(mark["rect"], offset)
    layout["offset"] = offset
    return layout, Image.open(io.BytesIO(page.screenshot())).convert("RGB")


def _assert_shown(page, apps_host, answer: dict, layout: dict) -> None:
    """Every picture the result names loaded; no "No preview" box; the host's look taken; no console error
    or warning; nothing asked of the network off loopback."""
    named = answer["meta"][viewer.META_KEY]
    uris = [e["uri"] for e in [*named.get("images", []), *named.get("frames", []), *named.get("pages", {}).values()]]
    assert uris and sorted(s["uri"] for s in layout["stages"]) == sorted(uris), (uris, layout["stages"])
    for stage in layout["stages"]:
        assert stage["loaded"] == "1" and stage["natural"][0] > 0 and stage["natural"][1] > 0, stage
    assert "No preview" not in layout["text"] and "No pictures" not in layout["text"], layout["text"]
    font = page.evaluate("getComputedStyle(document.body).fontFamily", frame=VIEW)
    assert font.startswith('"DejaVu Sans"'), font  # the host's --font-sans, through the bridge's host context
    assert page.console == [], page.console
    leaving = [u for u in page.requests if not u.startswith(("http://127.0.0.1:", "data:", "about:"))]
    assert leaving == [], f"requests left loopback: {leaving}"
    assert any(u.startswith(apps_host["sandbox"] + "/sandbox.html") for u in page.requests)
    assert page.evaluate("self.origin", frame=VIEW) == apps_host["sandbox"] != apps_host["host"]  # the view on its own origin


def test_locate_boxes_sit_on_their_pixels_in_the_apps_host(tabs, apps_host, stub, media):
    stub.replies.append(Reply(pieces=(LOCATE_ANSWER,)))
    page, answer, layout, shot = _call(tabs, apps_host, "locate", {"image": str(media / "screen.png"), "target": "the button"}, "locate")
    _assert_shown(page, apps_host, answer, layout)
    expected = _expected_boxes(LOCATE_ANSWER, LOCATE_SIZE)
    [stage] = layout["stages"]
    boxes = [m for m in stage["marks"] if m["kind"] == "box"]
    assert [b["label"] for b in answer["structured"]["boxes"]] == [label for label, _ in expected]
    assert len(boxes) == len(expected)
    for mark, (label, where) in zip(boxes, expected):
        assert label in mark["text"]
        _assert_drawn_at(stage, mark, where, f"box {label!r}")
        _assert_outlined(shot, mark, BOX_COLOUR, BACKGROUND, f"box {label!r}")


def test_describe_region_in_the_apps_host(tabs, apps_host, media):
    region = {"x": 450, "y": 120, "width": 300, "height": 240}
    page, answer, layout, shot = _call(tabs, apps_host, "describe_image", {"image": str(media / "photo.png"), "region": region}, "describe")
    _assert_shown(page, apps_host, answer, layout)
    [stage] = layout["stages"]
    [mark] = stage["marks"]
    assert mark["kind"] == "region"
    _assert_drawn_at(stage, mark, (450, 120, 300, 240), "region")
    x, y, _w, _h = mark["rect"]
    assert _near(shot.getpixel((int(x + 1), int(y + 4))), REGION_COLOUR)
    assert answer["structured"]["answer"].strip() in layout["text"]


def test_compare_changes_in_the_apps_host(tabs, apps_host, media):
    images = [str(media / "before.png"), str(media / "after.png")]
    page, answer, layout, shot = _call(tabs, apps_host, "compare_images", {"images": images}, "compare")
    _assert_shown(page, apps_host, answer, layout)
    regions = answer["structured"]["diffs"][0]["regions"]
    stages = sorted(layout["stages"], key=lambda s: s["image"])
    assert [s["image"] for s in stages] == [1, 2] and len(regions) == 2 and stages[0]["marks"] == []
    for mark, region in zip(stages[1]["marks"], regions):
        where = (region["x"], region["y"], region["width"], region["height"])
        _assert_drawn_at(stages[1], mark, where, f"changed region {where}")
        _assert_outlined(shot, mark, CHANGE_COLOUR, None, f"changed region {where}")


def test_ocr_pages_in_the_apps_host(tabs, apps_host, media):
    page, answer, layout, _shot = _call(tabs, apps_host, "ocr_document", {"document": str(media / "invoice.pdf"), "dpi": 40}, "ocr")
    _assert_shown(page, apps_host, answer, layout)
    shown = {s["page"]: s for s in layout["stages"]}
    assert sorted(shown) == [1, 2]
    assert [(p["page"], p["method"]) for p in answer["structured"]["pages"]] == [(1, "layout"), (2, "vision")]
    assert "Invoice 42: total due 1,234.56 EUR" in shown[1]["caption"]


def test_video_frames_in_the_apps_host(tabs, apps_host, media):
    page, answer, layout, shot = _call(tabs, apps_host, "video_qa", {"video": str(media / "clip.mp4"), "num_frames": 4}, "video")
    _assert_shown(page, apps_host, answer, layout)
    frames = sorted((s for s in layout["stages"] if s["frame"]), key=lambda s: s["frame"])
    assert [s["frame"] for s in frames] == [f["index"] for f in answer["structured"]["frames"]] == [1, 2, 3, 4]
    for stage, colour in zip(frames, VIDEO_COLOURS):
        x, y, w, h = stage["rect"]
        assert _near(shot.getpixel((int(x + w / 2), int(y + h / 2))), colour), stage


def test_the_apps_host_cannot_reach_a_server_that_does_not_allow_its_origin(tabs, apps_host, media, tmp_path):
    """The symptom this host first met: without `MCP_VISION_CORS_ORIGINS`, the browser refuses the page's
    calls (the preflight is not answered) and the host says it failed to connect."""
    env = servers.server_env("unused", media, MCP_VISION_BACKEND="openai", MCP_VISION_BASE_URL="http://127.0.0.1:9/v1")
    with servers.http_server(env, media, tmp_path / "server.log") as (port, _proc):
        page = tabs()
        page.navigate(f"{apps_host['host']}/?server=http://127.0.0.1:{port}/mcp")
        got = page.wait_for("window.appsHost", timeout=60)
        status = page.evaluate("document.getElementById('status').textContent")
    assert got["ready"] is False and "Failed to fetch" in got["error"], got
    assert status.startswith("Failed to connect"), status
    assert '"OPTIONS /mcp HTTP/1.1" 405' in (tmp_path / "server.log").read_text()


def test_follow_up_in_the_apps_host(tabs, apps_host, media):
    """A follow-up asked from the same host connection: its view shows the answer and the session's media."""
    page, described, _layout, _shot = _call(tabs, apps_host, "describe_image", {"image": str(media / "photo.png")}, None)
    session = described["structured"]["session_id"]
    page, answer, layout, _shot = _call(tabs, apps_host, "follow_up", {"session_id": session, "question": "And the sun?"}, None, page)
    _assert_shown(page, apps_host, answer, layout)
    [stage] = layout["stages"]
    assert stage["natural"] == [900, 600]
    assert answer["structured"]["answer"].strip() in layout["text"] and "The session's media" in layout["text"]


VIEW_LOOK = """(() => { const b = getComputedStyle(document.body);
  return { theme: document.documentElement.dataset.theme, background: b.backgroundColor, colour: b.color,
           overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth }; })()"""


def test_the_view_follows_the_hosts_theme_and_a_narrow_window(tabs, apps_host, media):
    """basic-host's theme toggle and a 520 px window: the view takes the dark theme the host announces (the
    host's light-dark() colours resolve to their dark side), and reflows with the changed regions still on
    their pixels."""
    images = [str(media / "before.png"), str(media / "after.png")]
    page, answer, layout, shot = _call(tabs, apps_host, "compare_images", {"images": images}, None)
    regions = answer["structured"]["diffs"][0]["regions"]
    light = page.evaluate(VIEW_LOOK, frame=VIEW)
    assert light == {"theme": "light", "background": "rgb(255, 255, 255)", "colour": "rgb(31, 35, 40)", "overflow": 0}, light
    page.evaluate("window.appsHost.setTheme('dark')")
    page.wait_for("document.documentElement.dataset.theme === 'dark'", frame=VIEW)
    for width in (1000, 520):
        layout, shot = _look(page, width)
        dark = page.evaluate(VIEW_LOOK, frame=VIEW)
        assert dark == {"theme": "dark", "background": "rgb(26, 26, 26)", "colour": "rgb(240, 240, 240)", "overflow": 0}, (width, dark)
        x, y = layout["offset"]
        assert shot.getpixel((int(x) + 4, int(y) + 4)) == (26, 26, 26)  # what a person sees: the dark view
        stage = next(s for s in layout["stages"] if s["image"] == 2)
        assert stage["rect"][0] + stage["rect"][2] <= x + width  # inside the window
        for mark, region in zip(stage["marks"], regions, strict=True):
            where = (region["x"], region["y"], region["width"], region["height"])
            _assert_drawn_at(stage, mark, where, f"changed region {where} at {width} px")
            _assert_outlined(shot, mark, CHANGE_COLOUR, None, f"changed region {where} at {width} px")
    assert page.console == [], page.console
