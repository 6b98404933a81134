"""The MCP tool surface: argument schemas, descriptions and annotations, wired to `VisionService`."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.apps import Apps, ResourceCsp, client_supports_apps
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import ListRootsResult, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from . import __version__, limits, previews, viewer
from .backend.base import Backend
from .errors import BusyError, VisionError
from .prompt_menu import register_prompts
from .results import (
    CompareImagesResult,
    DescribeImageResult,
    FollowUpResult,
    LocateResult,
    OcrDocumentResult,
    Region,
    VideoQaResult,
)
from .service import Principal, VisionService
from .settings import Settings

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
Vision for agents: an InternVL or Qwen2-VL model (local, or a configured vLLM/LMDeploy engine) looks at images,
documents and video.
Media arguments take a local path (absolute, ~, or relative to the server's working directory; only
inside the allowed directories), a file:// URI, an http(s) URL or a data: URI (base64). A client
connected over the network sends data: URIs or URLs (server-side paths only where the operator allows them).
Every tool returns a session_id; pass it to follow_up to ask more about the same media without
sending it again. The first call loads the model (or checks the engine), which can take a while;
progress is reported. Each call keeps within a time budget (MCP_VISION_CALL_BUDGET, default 50 s, or the
call's time_budget): a result's `budget` says what was reduced to fit, and ocr_document's `next_pages`
says which pages to ask for next.
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
    Field(
        description=f"Longest answer in tokens (default from MCP_VISION_MAX_NEW_TOKENS, {limits.DEFAULT_MAX_NEW_TOKENS}).",
        ge=1,
        le=limits.MAX_NEW_TOKENS_CAP,
    ),
]

TimeBudget = Annotated[
    float | None,
    Field(
        description="Seconds this call may take, from its arrival (default MCP_VISION_CALL_BUDGET, "
        f"{limits.DEFAULT_CALL_BUDGET:g}: under the ~60 s desktop clients allow). Within it the call reduces tiles, "
        "frames or answer length (see `budget` in the result) or returns what it finished; raise it for more.",
        gt=0,
        le=limits.MAX_TIME_BUDGET,
    ),
]

RegionParam = Annotated[
    Region | None,
    Field(
        description="Read only this part of the image {x, y, width, height} (original pixels, origin top-left), "
        "at the full tile budget: a zoom for small print. Coordinates in the result stay in the original image."
    ),
]
AnnotateArg = Annotated[
    bool,
    Field(description="Add a PNG after the text with what was found drawn on the image (false: text only)."),
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


@dataclass(frozen=True)
class AppState:
    """What the lifespan yields: the long-lived things every tool call uses."""

    service: VisionService


AppContext = Context[AppState, Any]


def _service(ctx: AppContext) -> VisionService:
    return ctx.request_context.lifespan_context.service


def _principal(service: VisionService) -> Principal:
    """Who calls: the principal of the request's bearer token (the SDK's auth middleware put it in context),
    else the local user (stdio, unauthenticated HTTP; remote when that HTTP is served beyond loopback)."""
    from mcp.server.auth.middleware.auth_context import get_access_token

    from .access import principal

    token = get_access_token()
    if token is not None:
        return Principal(principal(token), remote=True)
    return Principal(None, remote=service.settings.anonymous_remote)


def _caller(ctx: AppContext) -> Principal:
    return _principal(_service(ctx))


def _ask_for_roots(ctx: AppContext, sources: object) -> ListRoots | None:
    """Ask the client for its roots (`roots/list`) when it declared them, they are used, and a source is a
    local file (URLs and data: URIs are not narrowed by roots, so they cost no round trip)."""
    capabilities = ctx.client_capabilities
    settings = _service(ctx).settings
    if settings.allowed_dirs is not None:  # the user's own directories: roots change nothing, so never ask
        return None
    if _caller(ctx).remote:  # a remote caller's roots name its own machine's folders, never the server's
        return None
    if not settings.client_roots or capabilities is None or capabilities.roots is None:
        return None
    listed = sources if isinstance(sources, list) else [sources]
    remote = ("http://", "https://", "data:")
    if all(isinstance(s, str) and s.strip().lower().startswith(remote) for s in listed):
        return None
    return ListRoots()


# Resolvers, one per media argument name: the framework fills a tool's `roots` parameter with the client's
# roots (where files are read when MCP_VISION_ALLOWED_DIRS is unset). Never in a tool's schema, never set
# by the caller.
def _image_roots(ctx: AppContext, image: str) -> ListRoots | None:
    return _ask_for_roots(ctx, image)


def _document_roots(ctx: AppContext, document: str) -> ListRoots | None:
    return _ask_for_roots(ctx, document)


def _images_roots(ctx: AppContext, images: list[str]) -> ListRoots | None:
    return _ask_for_roots(ctx, images)


def _video_roots(ctx: AppContext, video: str) -> ListRoots | None:
    return _ask_for_roots(ctx, video)


ImageRoots = Annotated[ListRootsResult | None, Resolve(_image_roots)]
DocumentRoots = Annotated[ListRootsResult | None, Resolve(_document_roots)]
ImagesRoots = Annotated[ListRootsResult | None, Resolve(_images_roots)]
VideoRoots = Annotated[ListRootsResult | None, Resolve(_video_roots)]


def _root_dirs(listed: ListRootsResult | None):
    """The client's local root directories, or None (no narrowing) when it offers none."""
    if listed is None:
        return None
    from .inputs.sources import roots_from_uris

    return roots_from_uris(root.uri for root in listed.roots)


def _previews(ctx: AppContext) -> bool:
    """Whether this call keeps previews for the viewer and names them in `_meta` (never seen by the model).
    Hosts render the viewer whether or not they declared MCP Apps at initialize (the Apps reference host
    declares nothing), so by default every call does; MCP_VISION_PREVIEWS narrows that."""
    policy = _service(ctx).settings.previews
    return policy == "all" or (policy == "declared" and client_supports_apps(ctx))


@asynccontextmanager
async def _guard() -> AsyncIterator[None]:
    """Our own errors become tool errors the agent reads (isError) with their one sentence; the metrics count a
    refusal to queue as "busy"."""
    try:
        yield
    except VisionError as exc:
        error = ToolError(str(exc))
        error.outcome = "busy" if isinstance(exc, BusyError) else "error"  # type: ignore[attr-defined]
        raise error from None


# ---------------------------------------------------------------------------------------------- the tools
# Each docstring, dedented, is the description agents read.


async def describe_image(
    image: MediaSource,
    ctx: AppContext,
    question: Annotated[
        str | None,
        Field(description="What to ask about the image. Omit for a detailed description (text quoted exactly)."),
    ] = None,
    max_new_tokens: MaxNewTokens = None,
    max_tiles: Annotated[
        int | None,
        Field(
            description="Most 448x448 tiles to split the image into (more tiles read finer detail but take longer; "
            f"default MCP_VISION_MAX_TILES, {limits.DEFAULT_MAX_TILES}). A split image also gets one thumbnail tile, "
            "so the result's `tiles` can be one more.",
            ge=1,
            le=limits.MAX_TILES_CAP,
        ),
    ] = None,
    region: RegionParam = None,
    session_id: SessionArg = None,
    time_budget: TimeBudget = None,
    roots: ImageRoots = None,
) -> DescribeImageResult:
    """Look at one image (photo, screenshot, diagram, chart, scanned page) and answer a question about it,
    or describe it in detail. Reads PNG, JPEG, GIF, WebP, BMP, TIFF, ICO, PPM/PGM/PBM, AVIF, HEIF/HEIC, JPEG 2000
    (a GIF's first frame); PDFs go to ocr_document and videos to video_qa. Returns the answer, a session_id for
    follow_up, the image size, tiles and token counts."""
    async with _guard():
        described = await _service(ctx).describe_image(
            image, question=question, max_new_tokens=max_new_tokens, max_tiles=max_tiles, region=region,
            session_id=session_id, time_budget=time_budget, progress=_progress(ctx), roots=_root_dirs(roots),
            previews=_previews(ctx), principal=_caller(ctx),
        )
    return _tool_result(described, None)


async def follow_up(
    session_id: Annotated[str, Field(description="The session_id returned by an earlier tool call.", min_length=1)],
    question: Annotated[str, Field(description="The next question about the media and answers already in the session.", min_length=1)],
    ctx: AppContext,
    max_new_tokens: MaxNewTokens = None,
    time_budget: TimeBudget = None,
) -> FollowUpResult:
    """Ask another question in an existing session: the images and earlier answers are already there, so
    nothing is sent again. Sessions live in the server's memory and end when it restarts or after an hour
    unused."""
    async with _guard():
        followed = await _service(ctx).follow_up(
            session_id, question, max_new_tokens=max_new_tokens, time_budget=time_budget, progress=_progress(ctx),
            principal=_caller(ctx),
        )
    if _previews(ctx):
        followed._viewer = _session_media(_service(ctx), followed.session_id, _caller(ctx).key)
    return _tool_result(followed, None)


SESSION_MEDIA_SHOWN = 12  # follow_up's viewer shows the session's newest previews, at most these


def _session_media(service: VisionService, session_id: str, owner: str | None) -> dict[str, Any]:
    """The previews the session holds, newest last, for follow_up's viewer (sizes unknown: the viewer reads them
    from the pictures). Empty when the session kept none or has just ended."""
    try:
        keys = list(service.sessions.get(session_id, owner).previews)[-SESSION_MEDIA_SHOWN:]
    except VisionError:
        keys = []
    return {"images": [{"uri": previews.uri(session_id, key)} for key in keys]}


async def ocr_document(
    document: Annotated[
        str,
        Field(
            description="A PDF (or an EPUB, XPS, FB2, CBZ, MOBI or SVG document; Office files must be converted to "
            "PDF first), or an image of a page (a multi-page TIFF: every frame is a page): path, file:// URI, "
            "http(s) URL or data: URI.",
            min_length=1,
        ),
    ],
    ctx: AppContext,
    pages: Annotated[
        str | None,
        Field(description='Pages to read, e.g. "3", "1-3,7" or "5-" (1-based); all pages when omitted.'),
    ] = None,
    dpi: Annotated[
        int,
        Field(
            description=f"Resolution for rendering pages that are read by the model ({limits.MIN_DPI}-{limits.MAX_DPI}).",
            ge=limits.MIN_DPI,
            le=limits.MAX_DPI,
        ),
    ] = limits.DEFAULT_DPI,
    mode: Annotated[
        limits.OcrMode,
        Field(
            description="'auto': a page with a real text layer returns it as Markdown arranged by a layout model "
            "(headings, reading order, tables; running header and footer apart), the model reads the others "
            "(scanned pages); 'text_layer': every page's text layer exactly as stored, unarranged; 'vision': the "
            "model reads every page."
        ),
    ] = "auto",
    max_new_tokens: Annotated[
        int | None,
        Field(
            description=f"Most tokens the model writes per page it reads (default: at least {limits.OCR_MIN_TOKENS}).",
            ge=1,
            le=limits.MAX_NEW_TOKENS_CAP,
        ),
    ] = None,
    region: Annotated[
        Region | None,
        Field(description="For an image document: read only this part {x, y, width, height} (original pixels)."),
    ] = None,
    figures: Annotated[
        bool,
        Field(
            description="Also have the model describe each figure (chart, diagram, photograph) of a born-digital "
            "page, caption-aware, placed where the figure stands (the page's `figures`); inside the time budget, "
            "a page whose figures do not fit is left for next_pages."
        ),
    ] = False,
    session_id: SessionArg = None,
    time_budget: TimeBudget = None,
    roots: DocumentRoots = None,
) -> OcrDocumentResult:
    """Read the text of a PDF or a page image (a multi-page TIFF page by page too), page by page. Born-digital
    PDF pages return their own text layer as Markdown (headings, paragraphs in reading order, lists, tables), with
    each page's running header and footer apart (`header`, `footer`); text such a page shows but its text layer
    lacks (a title drawn as outlines, a picture of text) is read by the model and merged in place (`regions` says
    where and what), and with `figures` the model describes each figure in place; scanned or image-only pages are
    rendered and read by the model as Markdown, several in one batch. Each page says which method was used. Progress is reported as pages
    finish; at most MCP_VISION_MAX_PAGES pages a call (ask for ranges with `pages`). When the time budget or the
    output cap stops it early, it returns the pages it finished with truncated: true and next_pages, the
    exact `pages` value for the rest. The pages join the session, so follow_up can ask about them."""
    async with _guard():
        read = await _service(ctx).ocr_document(
            document, pages=pages, dpi=dpi, mode=mode, max_new_tokens=max_new_tokens, region=region,
            session_id=session_id, time_budget=time_budget, progress=_progress(ctx), roots=_root_dirs(roots),
            previews=_previews(ctx), principal=_caller(ctx), figures=figures,
        )
    return _tool_result(read, None)


async def locate(
    image: MediaSource,
    ctx: AppContext,
    target: Annotated[
        str | None,
        Field(
            description="What to find, in words: \"the Submit button\", \"every error message\", \"the cat\". Omit to "
            "find every salient object."
        ),
    ] = None,
    region: RegionParam = None,
    max_tiles: Annotated[
        int | None,
        Field(
            description="Most 448x448 tiles to split the image into (more find smaller things; default "
            f"MCP_VISION_MAX_TILES, {limits.DEFAULT_MAX_TILES}).",
            ge=1,
            le=limits.MAX_TILES_CAP,
        ),
    ] = None,
    max_new_tokens: MaxNewTokens = None,
    session_id: SessionArg = None,
    time_budget: TimeBudget = None,
    annotate: AnnotateArg = True,
    roots: ImageRoots = None,
) -> LocateResult:
    """Find things in an image (a screenshot, a photo, a diagram) and return click-ready boxes: each box's label,
    x, y, width, height and center in PIXELS OF THE ORIGINAL IMAGE, origin top-left, x right, y down, after
    EXIF orientation (coordinate_frame says so), whether or not a region was searched. Name a target ("the
    Submit button", "every error message") or omit it for all salient objects. No box found is a normal
    answer. A PNG with the boxes drawn follows the text (annotate: false omits it). Returns a session_id:
    follow_up can ask about what was found."""
    async with _guard():
        shown = await _service(ctx).locate(
            image, target=target, region=region, max_tiles=max_tiles, max_new_tokens=max_new_tokens,
            session_id=session_id, time_budget=time_budget, annotate=annotate, progress=_progress(ctx),
            roots=_root_dirs(roots), previews=_previews(ctx), principal=_caller(ctx),
        )
    return _tool_result(shown.result, shown.picture)


def _tool_result(result: BaseModel, picture: bytes | None) -> Any:
    """The result as usual (a text block holding the whole answer first: several hosts drop images), then
    the PNG, when there is one; for a client with MCP Apps, `_meta` names the previews the viewer shows."""
    shown = getattr(result, "_viewer", None)
    if picture is None and shown is None:
        return result  # exactly what the SDK makes of a plain result
    import pydantic_core
    from mcp.server.mcpserver import Image
    from mcp_types import CallToolResult, TextContent

    data = result.model_dump(mode="json", by_alias=True)
    text = pydantic_core.to_json(result, fallback=str, indent=2).decode()
    content: list[Any] = [TextContent(type="text", text=text)]
    if picture is not None:
        content.append(Image(data=picture, format="png").to_image_content())
    return CallToolResult(
        content=content, structured_content=data, _meta={viewer.META_KEY: shown} if shown is not None else None
    )


async def compare_images(
    images: Annotated[
        list[str],
        Field(
            description=f"{limits.MIN_COMPARE_IMAGES} to {limits.MAX_COMPARE_IMAGES} images (paths, file:// URIs, "
            "http(s) URLs or data: URIs); each is compared with the first.",
            min_length=limits.MIN_COMPARE_IMAGES,
            max_length=limits.MAX_COMPARE_IMAGES,
        ),
    ],
    ctx: AppContext,
    question: Annotated[str | None, Field(description="What to compare; omit to list the differences.")] = None,
    max_new_tokens: MaxNewTokens = None,
    session_id: SessionArg = None,
    time_budget: TimeBudget = None,
    annotate: AnnotateArg = True,
    roots: ImagesRoots = None,
) -> CompareImagesResult:
    """Compare 2 to 4 images (before/after screenshots, UI states, two photos or charts). Returns a measured,
    deterministic pixel comparison of each image against the first (similarity and changed regions as
    boxes in that image's own pixels) and the model's explanation of what changed where; the measured
    regions are given to the model too."""
    async with _guard():
        shown = await _service(ctx).compare_images(
            images, question=question, max_new_tokens=max_new_tokens, session_id=session_id,
            time_budget=time_budget, annotate=annotate, progress=_progress(ctx), roots=_root_dirs(roots),
            previews=_previews(ctx), principal=_caller(ctx),
        )
    return _tool_result(shown.result, shown.picture)


async def video_qa(
    video: Annotated[
        str,
        Field(
            description="The video (mp4, mov, webm, mkv, avi, animated GIF or APNG): path, file:// URI, http(s) URL "
            "or data: URI.",
            min_length=1,
        ),
    ],
    ctx: AppContext,
    question: Annotated[
        str | None, Field(description="What to ask about the video; omit for a description of what happens.")
    ] = None,
    num_frames: Annotated[
        int,
        Field(
            description="Frames sampled uniformly over [start, end] (1 to MCP_VISION_MAX_FRAMES).",
            ge=1,
            le=limits.MAX_FRAMES_CAP,
        ),
    ] = limits.DEFAULT_NUM_FRAMES,
    start: Annotated[float | None, Field(description="Start of the span to sample, in seconds.", ge=0)] = None,
    end: Annotated[float | None, Field(description="End of the span to sample, in seconds.", ge=0)] = None,
    max_new_tokens: MaxNewTokens = None,
    session_id: SessionArg = None,
    time_budget: TimeBudget = None,
    roots: VideoRoots = None,
) -> VideoQaResult:
    """Answer a question about a video (a screen recording, a clip) from frames sampled uniformly over a
    time span. Each frame is shown to the model labelled Frame1, Frame2, ... with its timestamp, and the
    result lists every frame's timestamp. Only the needed frames are decoded."""
    async with _guard():
        answered = await _service(ctx).video_qa(
            video, question=question, num_frames=num_frames, start=start, end=end, max_new_tokens=max_new_tokens,
            session_id=session_id, time_budget=time_budget, progress=_progress(ctx), roots=_root_dirs(roots),
            previews=_previews(ctx), principal=_caller(ctx),
        )
    return _tool_result(answered, None)


TOOLS = (
    (describe_image, "Describe an image", _READ_ONLY_OPEN),
    (follow_up, "Ask a follow-up question", _READ_ONLY_CLOSED),
    (ocr_document, "Read a document (OCR)", _READ_ONLY_OPEN),
    (locate, "Locate things in an image", _READ_ONLY_OPEN),
    (compare_images, "Compare images", _READ_ONLY_OPEN),
    (video_qa, "Ask about a video", _READ_ONLY_OPEN),
)


def _state_configured_limits(mcp: MCPServer, settings: Settings) -> None:
    """The schemas advertise the limits this server enforces (the configured ones, not the caps)."""
    configured = {
        ("describe_image", "max_tiles"): settings.max_tiles,
        ("locate", "max_tiles"): settings.max_tiles,
        ("video_qa", "num_frames"): settings.max_frames,
    }
    for (tool_name, argument), maximum in configured.items():
        schema = mcp._tool_manager.get_tool(tool_name).parameters["properties"][argument]
        for option in [schema, *schema.get("anyOf", [])]:
            if "maximum" in option:
                option["maximum"] = maximum


async def read_preview(session_id: str, key: str, ctx: AppContext) -> bytes:
    """A preview (JPEG) of media a session holds, for the viewer; only this session's, only while it lives, and
    only for the principal that created the session (any other gets the answer an unknown session gets)."""
    try:
        return _service(ctx).sessions.preview(session_id, key, _caller(ctx).key)
    except VisionError as exc:
        raise ResourceNotFoundError(str(exc)) from None


class VisionServer(MCPServer):
    """The SDK's server, with schema violations told in one sentence (see arguments.py), and the previews'
    resource template left out of `resources/templates/list`: the viewer knows it, the model need not."""

    async def list_resource_templates(self) -> list[Any]:
        return [t for t in await super().list_resource_templates() if t.uri_template != previews.TEMPLATE]

    service: VisionService

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """The SDK's call, counted for the metrics by tool and outcome (ok, error, busy) and timed."""
        import time

        started, outcome = time.monotonic(), "error"
        try:
            result = await self._call_tool(name, arguments, context)
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            return result
        except ToolError as exc:
            # The SDK re-raises a tool's ToolError as its own ("Error executing tool ..."), caused by ours.
            outcome = getattr(exc, "outcome", None) or getattr(exc.__cause__, "outcome", "error")
            raise
        finally:
            if self._tool_manager.get_tool(name) is not None:  # an unknown name is no tool's call
                self.service.events.tool_call(name, outcome, time.monotonic() - started)

    async def _call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            tool = self._tool_manager.get_tool(name)
            if tool is None or not isinstance(exc.__cause__, ValidationError):
                raise
            from .arguments import argument_error

            raise ToolError(f"Error executing tool {name}: {argument_error(name, exc.__cause__, tool.parameters)}") from exc


def build_server(
    settings: Settings | None = None, backend: Backend | None = None, *, service: VisionService | None = None
) -> MCPServer:
    """A ready MCPServer around `service` (or one built from `settings` and `backend`). Nothing heavy happens
    here: the model loads on the first call that needs it."""
    if service is None:
        if settings is None:
            raise TypeError("build_server needs settings or a service")
        service = VisionService(settings, backend)
    settings = service.settings

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        task = None
        if settings.preload:
            import asyncio

            async def warm() -> None:
                try:
                    await service.preload()
                except VisionError as exc:
                    log.warning("preload failed: %s", exc)

            task = asyncio.ensure_future(warm())
        try:
            yield AppState(service=service)
        finally:
            if task is not None and not task.done():
                task.cancel()

    apps = Apps()  # the viewer, bound to the visual tools; a client without Apps just never renders it
    apps.add_html_resource(
        viewer.URI, viewer.html(), name="viewer", title=viewer.TITLE, description=viewer.DESCRIPTION,
        csp=ResourceCsp(), prefers_border=True,  # no external origin at all
    )
    for fn, title, hints in TOOLS:
        if fn.__name__ in viewer.VIEWED_TOOLS:  # bound to the viewer: `_meta.ui.resourceUri`
            apps.tool(
                resource_uri=viewer.URI, title=title, annotations=hints, description=inspect.cleandoc(fn.__doc__ or "")
            )(fn)
    mcp = VisionServer(
        name="mcp-vision",
        title="mcp-vision: local eyes for agents",
        description="Describe images, read documents, compare images and ask about video with a local InternVL or Qwen2-VL model.",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
        extensions=[apps],
    )
    mcp.service = service
    register_prompts(mcp, service.prompts)
    for fn, title, hints in TOOLS:
        if fn.__name__ not in viewer.VIEWED_TOOLS:
            mcp.add_tool(fn, title=title, annotations=hints, description=inspect.cleandoc(fn.__doc__ or ""))
    mcp.resource(
        previews.TEMPLATE, name="preview", title="Preview of a session's media", mime_type=previews.MIME_TYPE,
        description="A small JPEG of an image, page or frame a session holds, for the viewer.",
    )(read_preview)
    _state_configured_limits(mcp, settings)
    return mcp


__all__ = ["build_server", "VisionServer", "AppState", "INSTRUCTIONS", "TOOLS"]
