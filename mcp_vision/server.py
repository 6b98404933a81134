"""The MCP tool surface: argument schemas, descriptions and annotations, wired to `VisionService`."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ListRootsResult, ToolAnnotations
from pydantic import Field

from . import __version__
from .backend.base import Backend
from .errors import VisionError
from .media import roots_from_uris
from .mcp_prompts import register_prompts
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
Vision for agents: an InternVL model (local, or a configured vLLM/LMDeploy engine) looks at images,
documents and video.
Media arguments take a local path (absolute, ~, or relative to the server's working directory; only
inside the allowed directories), a file:// URI, an http(s) URL or a data: URI (base64).
Every tool returns a session_id; pass it to follow_up to ask more about the same media without
sending it again. The first call loads the model (or checks the engine), which can take a while;
progress is reported.
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
    """Relay progress, keeping values strictly increasing as the protocol requires (heartbeats nudge)."""
    last = -1.0

    async def send(progress: float, total: float | None, message: str | None) -> None:
        nonlocal last
        value = max(float(progress), last + 0.001)
        if total is not None and value > total:
            if last >= total:
                return
            value = float(total)
        last = value
        try:
            await ctx.report_progress(value, total, message)
        except Exception:  # a client that went away must not fail the work
            log.debug("progress notification not delivered", exc_info=True)

    return send


def _ask_for_roots(ctx: Context, sources: object) -> ListRoots | None:
    """Ask the client for its roots (`roots/list`) when it declared them, they are used, and a source is a
    local file (URLs and data: URIs are not narrowed by roots, so they cost no round trip)."""
    capabilities = ctx.client_capabilities
    if not ctx.mcp_server.service.settings.client_roots or capabilities is None or capabilities.roots is None:
        return None
    listed = sources if isinstance(sources, list) else [sources]
    remote = ("http://", "https://", "data:")
    if all(isinstance(s, str) and s.strip().lower().startswith(remote) for s in listed):
        return None
    return ListRoots()


# Resolvers, one per media argument name: the framework fills a tool's `roots` parameter with the client's
# roots, which narrow the allowed directories. Never in a tool's schema, never set by the caller.
def _image_roots(ctx: Context, image: str) -> ListRoots | None:
    return _ask_for_roots(ctx, image)


def _document_roots(ctx: Context, document: str) -> ListRoots | None:
    return _ask_for_roots(ctx, document)


def _images_roots(ctx: Context, images: list[str]) -> ListRoots | None:
    return _ask_for_roots(ctx, images)


def _video_roots(ctx: Context, video: str) -> ListRoots | None:
    return _ask_for_roots(ctx, video)


ImageRoots = Annotated[ListRootsResult | None, Resolve(_image_roots)]
DocumentRoots = Annotated[ListRootsResult | None, Resolve(_document_roots)]
ImagesRoots = Annotated[ListRootsResult | None, Resolve(_images_roots)]
VideoRoots = Annotated[ListRootsResult | None, Resolve(_video_roots)]


def _root_dirs(listed: ListRootsResult | None):
    """The client's local root directories, or None (no narrowing) when it offers none."""
    return roots_from_uris(root.uri for root in listed.roots) if listed is not None else None


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
    mcp.service = service  # type: ignore[attr-defined]  # for resolvers, tests and embedding
    register_prompts(mcp, service.prompts)

    def tool(title: str, annotations: ToolAnnotations):
        """Register a tool whose docstring, dedented, is the description agents read."""

        def decorate(fn):
            return mcp.tool(title=title, annotations=annotations, description=inspect.cleandoc(fn.__doc__ or ""))(fn)

        return decorate

    @tool(title="Describe an image", annotations=_READ_ONLY_OPEN)
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
        roots: ImageRoots = None,
    ) -> DescribeImageResult:
        """Look at one image (photo, screenshot, diagram, chart, scanned page) and answer a question about it,
        or describe it in detail. PNG, JPEG, GIF (first frame), WebP, BMP, TIFF, ICO and PPM are read; PDFs go
        to ocr_document and videos to video_qa. Returns the answer, a session_id for follow_up, the image
        size, tiles and token counts."""
        async with _guard():
            return await service.describe_image(
                image, question, max_new_tokens, max_tiles, session_id, progress=_progress(ctx), roots=_root_dirs(roots)
            )

    @tool(title="Ask a follow-up question", annotations=_READ_ONLY_CLOSED)
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

    @tool(title="Read a document (OCR)", annotations=_READ_ONLY_OPEN)
    async def ocr_document(
        document: Annotated[
            str,
            Field(description="A PDF, or an image of a page: path, file:// URI, http(s) URL or data: URI.", min_length=1),
        ],
        ctx: Context,
        pages: Annotated[
            str | None,
            Field(description='Pages to read, e.g. "3", "1-3,7" or "5-" (1-based); all pages when omitted.'),
        ] = None,
        dpi: Annotated[
            int, Field(description="Resolution for rendering pages that are read by the model (36-600).", ge=36, le=600)
        ] = 150,
        mode: Annotated[
            Literal["auto", "text_layer", "vision"],
            Field(
                description="'auto': a page's own text layer when it has real text (exact, fast), the model otherwise "
                "(scanned pages); 'text_layer' or 'vision' force one method."
            ),
        ] = "auto",
        max_new_tokens: Annotated[
            int | None,
            Field(description="Most tokens the model writes per page it reads (default: at least 1024).", ge=1, le=8192),
        ] = None,
        session_id: SessionArg = None,
        roots: DocumentRoots = None,
    ) -> OcrDocumentResult:
        """Read the text of a PDF or a page image, page by page. Born-digital PDF pages return their exact text
        layer; scanned or image-only pages are rendered and read by the model as Markdown (headings, lists,
        tables), several in one batch. Each page says which method was used. Progress is reported as pages
        finish; at most MCP_VISION_MAX_PAGES pages a call (ask for ranges with `pages`). The pages join the session, so
        follow_up can ask about them."""
        async with _guard():
            return await service.ocr_document(
                document, pages, dpi, mode, session_id,
                progress=_progress(ctx), max_new_tokens=max_new_tokens, roots=_root_dirs(roots),
            )

    @tool(title="Compare images", annotations=_READ_ONLY_OPEN)
    async def compare_images(
        images: Annotated[
            list[str],
            Field(
                description="2 to 4 images (paths, file:// URIs, http(s) URLs or data: URIs); each is compared with the first.",
                min_length=2,
                max_length=4,
            ),
        ],
        ctx: Context,
        question: Annotated[str | None, Field(description="What to compare; omit to list the differences.")] = None,
        max_new_tokens: MaxNewTokens = None,
        session_id: SessionArg = None,
        roots: ImagesRoots = None,
    ) -> CompareImagesResult:
        """Compare 2 to 4 images (before/after screenshots, UI states, two photos or charts). Returns a measured,
        deterministic pixel comparison of each image against the first (similarity and changed regions as
        boxes in that image's own pixels) and the model's explanation of what changed where; the measured
        regions are given to the model too."""
        async with _guard():
            return await service.compare_images(
                images, question, max_new_tokens, session_id, progress=_progress(ctx), roots=_root_dirs(roots)
            )

    @tool(title="Ask about a video", annotations=_READ_ONLY_OPEN)
    async def video_qa(
        video: Annotated[
            str,
            Field(
                description="The video (mp4, mov, webm, mkv, avi, animated GIF or APNG): path, file:// URI, http(s) URL "
                "or data: URI.",
                min_length=1,
            ),
        ],
        ctx: Context,
        question: Annotated[
            str | None, Field(description="What to ask about the video; omit for a description of what happens.")
        ] = None,
        num_frames: Annotated[
            int, Field(description="Frames sampled uniformly over [start, end] (1 to MCP_VISION_MAX_FRAMES).", ge=1, le=64)
        ] = 8,
        start: Annotated[float | None, Field(description="Start of the span to sample, in seconds.", ge=0)] = None,
        end: Annotated[float | None, Field(description="End of the span to sample, in seconds.", ge=0)] = None,
        max_new_tokens: MaxNewTokens = None,
        session_id: SessionArg = None,
        roots: VideoRoots = None,
    ) -> VideoQaResult:
        """Answer a question about a video (a screen recording, a clip) from frames sampled uniformly over a
        time span. Each frame is shown to the model labelled Frame1, Frame2, ... with its timestamp, and the
        result lists every frame's timestamp. Only the needed frames are decoded."""
        async with _guard():
            return await service.video_qa(
                video, question, num_frames, start, end, max_new_tokens, session_id,
                progress=_progress(ctx), roots=_root_dirs(roots),
            )

    return mcp


__all__ = ["build_server", "INSTRUCTIONS"]
