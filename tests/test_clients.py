"""Real clients nobody here wrote: the official MCP Inspector CLI (npm) and PyPI's mcp-conform.

The Inspector is the version pinned in `.ci/node/package.json` (its whole tree pinned by the lock file;
`.ci/run` installs it with `npm ci --prefix .ci/node`); without that install its tests skip and say so
(never a fetch from the network, which fails offline). Each Inspector CLI call starts a new server process over stdio, so a session minted by one
call is unknown to the next: follow_up across calls is tested over streamable HTTP, where one server
outlives many client processes.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from . import servers
from .servers import SERVER

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / ".ci" / "node"
TOOLS = {"describe_image", "follow_up", "ocr_document", "compare_images", "video_qa", "locate"}

pytestmark = pytest.mark.slow


def _inspector() -> list[str]:
    if not shutil.which("node"):
        pytest.skip("Node.js is not installed; the MCP Inspector CLI needs it (Node >= 20)")
    local = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector"
    if not local.exists():
        pytest.skip("the pinned MCP Inspector is not installed: run `npm ci --prefix .ci/node`")
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["@modelcontextprotocol/inspector"]
    installed = json.loads(
        (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "package.json").read_text()
    )["version"]
    if installed != pinned:
        pytest.skip(f"the MCP Inspector installed is {installed}, not the pinned {pinned}: run `npm ci --prefix .ci/node`")
    return [str(local)]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG pair, a PDF (a text page and a scanned page) and a short video, in one allowed directory."""
    import pymupdf

    d = tmp_path_factory.mktemp("client-media")
    Image.new("RGB", (320, 200), "red").save(d / "before.png")
    after = Image.new("RGB", (320, 200), "red")
    after.paste((0, 0, 255), (200, 40, 280, 120))
    after.save(d / "after.png")

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Quarterly report 2026: revenue grew 12 percent.", fontsize=12)
    scan = d / "scan.png"
    Image.new("RGB", (200, 280), (240, 240, 240)).save(scan)
    doc.new_page().insert_image(pymupdf.Rect(50, 50, 545, 792), filename=str(scan))
    doc.save(d / "report.pdf")
    _video(d)
    return d


def _video(d: Path) -> None:
    """clip.mp4 (H.264, or MPEG-4 part 2 when this PyAV has no x264): 2 s, red then blue; else clip.gif."""
    import av
    import numpy as np

    for codec in ("libx264", "mpeg4"):
        try:
            av.Codec(codec, "w")
        except Exception:
            continue
        with av.open(str(d / "clip.mp4"), "w") as container:
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for colour in ((255, 0, 0), (0, 0, 255)):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colour, np.uint8), format="rgb24")
                for _ in range(10):
                    container.mux(stream.encode(frame))
            container.mux(stream.encode())
        return
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "blue")]
    frames[0].save(d / "clip.gif", save_all=True, append_images=frames[1:], duration=1000, loop=0)


@pytest.fixture(scope="module")
def server_env(tiny_model_dir: Path, media: Path) -> dict[str, str]:
    return servers.server_env(
        tiny_model_dir, media,
        MCP_VISION_MAX_NEW_TOKENS="4",
        MCP_VISION_MAX_TILES="2",
        MCP_VISION_LOG_LEVEL="WARNING",  # the Inspector pipes the server's stderr without reading it
    )


def _run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def inspect(server_env: dict[str, str], media: Path, *args: str, target: list[str] = SERVER) -> dict:
    """One Inspector CLI run; exit status 0 and the JSON it prints."""
    proc = _run([*_inspector(), "--cli", *target, *args], server_env, media)
    assert proc.returncode == 0, f"inspector exited {proc.returncode}: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def call(server_env: dict[str, str], media: Path, tool: str, *tool_args: str, target: list[str] = SERVER) -> dict:
    args = ["--method", "tools/call", "--tool-name", tool]
    for pair in tool_args:
        args += ["--tool-arg", pair]
    return inspect(server_env, media, *args, target=target)


def _ok(result: dict) -> dict:
    assert result.get("isError") is not True, result["content"]
    data = result["structuredContent"]
    assert json.loads(result["content"][0]["text"]) == data  # the same answer as text
    assert data["session_id"].startswith("vs_")
    return data


def test_inspector_lists_tools_with_metadata(server_env, media):
    tools = {t["name"]: t for t in inspect(server_env, media, "--method", "tools/list")["tools"]}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool["title"] and tool["description"]
        assert tool["outputSchema"]["type"] == "object"
        assert tool["annotations"]["readOnlyHint"] is True


def test_inspector_lists_and_gets_prompts(server_env, media):
    prompts = {p["name"]: p for p in inspect(server_env, media, "--method", "prompts/list")["prompts"]}
    assert {"review-ui-screenshot", "extract-table", "explain-chart", "diff-screenshots"} <= set(prompts)
    got = inspect(
        server_env, media, "--method", "prompts/get", "--prompt-name", "diff-screenshots",
        "--prompt-args", "before=before.png", "after=after.png",
    )
    text = got["messages"][0]["content"]["text"]
    assert '`compare_images` with `images` set to ["before.png", "after.png"]' in text
    missing = _run(
        [*_inspector(), "--cli", *SERVER, "--method", "prompts/get", "--prompt-name", "diff-screenshots",
         "--prompt-args", "before=before.png"],
        server_env, media,
    )
    assert missing.returncode == 1
    assert "needs a value for 'after'" in missing.stderr


@pytest.fixture(scope="module")
def described(server_env, media) -> dict:
    return call(server_env, media, "describe_image", "image=before.png", "max_new_tokens=3")


def test_inspector_calls_describe_image(described):
    data = _ok(described)
    assert data["image"] == {"width": 320, "height": 200, "format": "PNG"}
    assert 1 <= data["usage"]["output_tokens"] <= 3  # the string "3" became the integer the schema asks for


def test_inspector_calls_ocr_document(server_env, media):
    data = _ok(call(server_env, media, "ocr_document", "document=report.pdf", "pages=1-2", "dpi=72", "max_new_tokens=16"))
    assert data["page_count"] == 2
    assert [p["method"] for p in data["pages"]] == ["layout", "vision"]
    assert "revenue grew 12 percent" in data["pages"][0]["text"]


def test_inspector_calls_compare_images(server_env, media):
    # An array argument: the Inspector parses the JSON because the schema says "array".
    data = _ok(call(server_env, media, "compare_images", 'images=["before.png", "after.png"]'))
    (diff,) = data["diffs"]
    assert diff["image"] == 2 and 0 < diff["similarity"] < 1
    assert any(r["x"] <= 200 and r["x"] + r["width"] >= 280 for r in diff["regions"])


def test_inspector_calls_video_qa(server_env, media):
    video = "clip.mp4" if (media / "clip.mp4").exists() else "clip.gif"
    data = _ok(call(server_env, media, "video_qa", f"video={video}", "num_frames=4"))
    stamps = [f["timestamp"] for f in data["frames"]]
    assert [f["index"] for f in data["frames"]] == [1, 2, 3, 4]
    assert stamps == sorted(stamps) and stamps[-1] < data["duration"] + 1e-6


def test_inspector_follow_up_over_stdio_meets_a_new_server(server_env, media, described):
    """Each CLI call is a new server process: the earlier session is unknown, and says so as a tool error."""
    sid = described["structuredContent"]["session_id"]
    result = call(server_env, media, "follow_up", f"session_id={sid}", "question=And the colour?")
    assert result["isError"] is True
    assert "Unknown or expired session_id" in result["content"][0]["text"]


@pytest.fixture
def http_server(server_env, media, tmp_path):
    with servers.http_server(server_env, media, tmp_path / "server.log") as (port, _proc):
        yield f"http://127.0.0.1:{port}/mcp"


def test_inspector_follow_up_over_http_keeps_the_session(server_env, media, http_server):
    """One server, two Inspector processes: follow_up continues the session the first call minted."""
    first = _ok(call(server_env, media, "describe_image", "image=after.png", target=[http_server]))
    second = _ok(call(
        server_env, media, "follow_up", f"session_id={first['session_id']}", "question=Where is the blue square?",
        target=[http_server],
    ))
    assert second["session_id"] == first["session_id"]
    assert second["turns"] == 2


def test_mcp_conform_passes_every_check(server_env, media):
    tool = Path(sys.executable).with_name("mcp-conform")
    if not tool.exists():
        found = shutil.which("mcp-conform")
        assert found, 'mcp-conform is not installed: pip install -e ".[test]" installs it'
        tool = Path(found)
    command = shlex.join(SERVER)  # mcp-conform splits --command with shlex
    proc = _run([str(tool), "server", "--transport", "stdio", "--command", command, "--timeout", "60", "--format", "json"],
                server_env, media)
    report = json.loads(proc.stdout)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert proc.returncode == 0 and report["ok"] and not failed and not report["fatal_error"], report
    names = {c["name"] for c in report["checks"]}
    assert "method_not_found" in names and "server_info_version" in names
    assert sum(name.endswith("_input_schema") for name in names) == len(TOOLS)
