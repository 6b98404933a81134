"""The MCP tool surface: argument schemas, descriptions and annotations, wired to `VisionService`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from . import __version__
from .backend.base import Backend
from .errors import VisionError
from .results import (
    CompareImagesResult,
    DescribeImageResult,
    FollowUpResult,
    OcrDocumentResult,
    VideoQaResult,
)
from .service import VisionService
from .settings import Settings

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
Local vision for agents: a local InternVL model looks at images, documents and video.
Media arguments take a local path (absolute, ~, or relative to the server's working directory; only
inside the allowed directories), a file:// URI, an http(s) URL or a data: URI (base64).
Every tool returns a session_id; pass it to follow_up to ask more about the same media without
sending it again. The first call loads the model, which can take a while; progress is reported.
"""

MediaSource = Annotated[
    str,
    Field(
        description="The media: a local path (absolute, ~ or relative), a file:// URI, an http(s) URL, "
        "or a data: URI with base64 content.",
        min_length=1,
    ),
]
SessionArg = Annotated[
    str | None,
    Field(description="Continue this conversation (a session_id returned by an earlier call); omit to start a new one."),
]
MaxNewTokens = Annotated[
    int | None,
    Field(description="Longest answer in tokens (default from MCP_VISION_MAX_NEW_TOKENS, 512).", ge=1, le=8192),
]

_READ_ONLY_OPEN = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
_READ_ONLY_CLOSED = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


def _progress(ctx: Context):
    async def send(progress: float, total: float | None, message: str | None) -> None:
        try:
            await ctx.report_progress(progress, total, message)
        except Exception:  # a client that went away must not fail the work
            log.debug("progress notification not delivered", exc_info=True)

    return send


@asynccontextmanager
async def _guard() -> AsyncIterator[None]:
    """Our own errors become tool errors the agent reads (isError) with their one sentence."""
    try:
        yield
    except VisionError as exc:
        raise ToolError(str(exc)) from None


def build_server(settings: Settings, backend: Backend | None = None) -> MCPServer:
    """A ready MCPServer. Nothing heavy happens here: the model loads on the first call that needs it."""
    service = VisionService(settings, backend)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[VisionService]:
        if settings.preload:
            import asyncio

            async def warm() -> None:
                try:
                    await service.preload()
                except VisionError as exc:
                    log.warning("preload failed: %s", exc)

            task = asyncio.ensure_future(warm())
        try:
            yield service
        finally:
            if settings.preload and not task.done():
                task.cancel()

    mcp = MCPServer(
        name="mcp-vision",
        title="mcp-vision: local eyes for agents",
        description="Describe images, read documents, compare images and ask about video with a local InternVL model.",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
    )
    mcp.service = service  # type: ignore[attr-defined]  # for tests and embedding

    @mcp.tool(title="Describe an image", annotations=_READ_ONLY_OPEN)
    async def describe_image(
        image: MediaSource,
        ctx: Context,
        question: Annotated[
            str | None,
            Field(description="What to ask about the image. Omit for a detailed description (text quoted exactly)."),
        ] = None,
        max_new_tokens: MaxNewTokens = None,
        max_tiles: Annotated[
            int | None,
            Field(
                description="Most 448x448 tiles to split the image into (more tiles read finer detail but take longer; "
                "default MCP_VISION_MAX_TILES, 12).",
                ge=1,
                le=40,
            ),
        ] = None,
        session_id: SessionArg = None,
    ) -> DescribeImageResult:
        """Look at one image (photo, screenshot, diagram, chart, scanned page) and answer a question about it,
        or describe it in detail. PNG, JPEG, GIF (first frame), WebP, BMP, TIFF, ICO and PPM are read; PDFs go
        to ocr_document and videos to video_qa. Returns the answer, a session_id for follow_up, the image
        size, tiles and token counts."""
        async with _guard():
            return await service.describe_image(
                image, question, max_new_tokens, max_tiles, session_id, progress=_progress(ctx)
            )

    @mcp.tool(title="Ask a follow-up question", annotations=_READ_ONLY_CLOSED)
    async def follow_up(
        session_id: Annotated[str, Field(description="The session_id returned by an earlier tool call.", min_length=1)],
        question: Annotated[str, Field(description="The next question about the media and answers already in the session.", min_length=1)],
        ctx: Context,
        max_new_tokens: MaxNewTokens = None,
    ) -> FollowUpResult:
        """Ask another question in an existing session: the images and earlier answers are already there, so
        nothing is sent again. Sessions live in the server's memory and end when it restarts or after an hour
        unused."""
        async with _guard():
            return await service.follow_up(session_id, question, max_new_tokens, progress=_progress(ctx))

    @mcp.tool(title="Read a document (OCR)", annotations=_READ_ONLY_OPEN)
    async def ocr_document(
        document: Annotated[str, Field(description="A PDF or an image of a page: path, file:// URI, http(s) URL or data: URI.", min_length=1)],
        pages: Annotated[str | None, Field(description='Pages to read, e.g. "3", "1-3,7" or "5-"; all pages when omitted.')] = None,
        dpi: Annotated[int, Field(description="Resolution for rendering pages that have no text layer.", ge=36, le=600)] = 150,
        mode: Annotated[
            str,
            Field(description="'auto' uses a page's text layer when it has one and the model otherwise; 'text_layer' or 'vision' force one."),
        ] = "auto",
        session_id: SessionArg = None,
    ) -> OcrDocumentResult:
        """Read the text of a PDF or a page image, page by page, as Markdown; born-digital pages use their exact
        text layer, scanned pages are read by the model. Not implemented yet in this version: returns an error."""
        raise ToolError(str(service.not_yet("ocr_document", 3)))

    @mcp.tool(title="Compare images", annotations=_READ_ONLY_OPEN)
    async def compare_images(
        images: Annotated[list[str], Field(description="2 to 4 images (paths, URIs, URLs or data: URIs); each is compared with the first.", min_length=2, max_length=4)],
        question: Annotated[str | None, Field(description="What to compare; omit to list the differences.")] = None,
        session_id: SessionArg = None,
    ) -> CompareImagesResult:
        """Compare 2 to 4 images (before/after screenshots, two photos, two charts): a measured pixel difference
        with changed regions, and the model's explanation. Not implemented yet in this version: returns an error."""
        raise ToolError(str(service.not_yet("compare_images", 4)))

    @mcp.tool(title="Ask about a video", annotations=_READ_ONLY_OPEN)
    async def video_qa(
        video: Annotated[str, Field(description="The video (mp4, webm, mov, mkv, animated GIF): path, file:// URI, http(s) URL or data: URI.", min_length=1)],
        question: Annotated[str | None, Field(description="What to ask about the video; omit for a description of what happens.")] = None,
        num_frames: Annotated[int, Field(description="Frames sampled uniformly over [start, end].", ge=1, le=32)] = 8,
        start: Annotated[float | None, Field(description="Start of the span to sample, in seconds.", ge=0)] = None,
        end: Annotated[float | None, Field(description="End of the span to sample, in seconds.", ge=0)] = None,
        session_id: SessionArg = None,
    ) -> VideoQaResult:
        """Answer a question about a video from frames sampled over a time span, each labelled with its timestamp.
        Not implemented yet in this version: returns an error."""
        raise ToolError(str(service.not_yet("video_qa", 4)))

    return mcp


__all__ = ["build_server", "INSTRUCTIONS"]
