"""The viewer (MCP Apps): one self-contained HTML page, `ui://mcp-vision/viewer.html`, that shows a person
what a visual tool found (boxes on the image, changed regions, pages beside their text, video frames).

The host renders it beside a tool result and hands it the result; the page asks the host (`resources/read`)
for the previews the result's `_meta` names (see previews.py). No script, style or font comes from
elsewhere, so it runs offline under the strictest CSP. MCP-free: server.py registers it with the SDK's Apps.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

URI = "ui://mcp-vision/viewer.html"
META_KEY = "io.github.mcp-vision/viewer"  # the result's `_meta` entry naming its previews
VIEWED_TOOLS = ("describe_image", "locate", "compare_images", "ocr_document", "video_qa", "follow_up")
TITLE = "mcp-vision viewer"
DESCRIPTION = (
    "Shows a visual tool's result: boxes on the image, changed regions, pages beside their text, video frames "
    "with timestamps, the answer, model, timings and token counts; for follow_up, the answer and the session's media."
)


@cache
def html() -> str:
    """The viewer page, as shipped in the package."""
    return files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")


__all__ = ["URI", "META_KEY", "VIEWED_TOOLS", "TITLE", "DESCRIPTION", "html"]
