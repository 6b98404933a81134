"""The tools' logic, free of MCP: validate, load media, ask the backend, shape the result.

Each tool's path: service -> (ocr | inputs | sessions | compose) -> backend.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

from . import limits
from .backend import create_backend, engine_class
from .backend.base import Backend, ChatResult, Job, Turn
from .budget import MARGIN_SECONDS, Budget, Plan, Speeds, plan
from .errors import ContextOverflowError, InputError, ModelLoading
from .prompts import PromptLibrary
from .results import (
    BudgetReport,
    CompareImagesResult,
    DescribeImageResult,
    FoundBox,
    LocateResult,
    Point,
    FollowUpResult,
    FrameInfo,
    ImageDiff,
    ImageInfo,
    OcrDocumentResult,
    Region,
    Usage,
    VideoQaResult,
)
from .sessions import Session, SessionStore
from .settings import Settings
from .worker import InferenceWorker, Progress

if TYPE_CHECKING:
    from .inputs.images import DecodedImage

T = TypeVar("T")
R = TypeVar("R")
Roots = tuple[Path, ...] | None  # the client's root directories (where files are read when none are configured)


@dataclass(frozen=True)
class Shown(Generic[R]):
    """A tool's result and, for a person (and a client that shows images), a PNG of what it found."""

    result: R
    picture: bytes | None = None


@dataclass(frozen=True)
class _Asked:
    """One image asked about: what was decoded, the part shown, the plan, the session and the answer."""

    decoded: DecodedImage
    shown: tuple[int, int, int, int]
    fitted: Plan
    session: Session
    result: ChatResult
    dropped: int


def crop(decoded, region: Region | None):
    """The part of a decoded image to read: (image, (left, top, width, height) in original pixels); the whole
    image without a region. A region not inside the image is one InputError (Region itself refuses an empty
    one or one starting before the image)."""
    width, height = decoded.width, decoded.height
    if region is None:
        return decoded.image, (0, 0, width, height)
    if region.x + region.width > width or region.y + region.height > height:
        raise InputError(
            f"region {_shown_region(region)} falls outside the {width}x{height} image: keep x + width <= {width} "
            f"and y + height <= {height} (pixels of the original image, after EXIF orientation)."
        )
    box = (region.x, region.y, region.x + region.width, region.y + region.height)
    return decoded.image.crop(box), (region.x, region.y, region.width, region.height)


def _shown_region(region: Region) -> str:
    return f"{{x: {region.x}, y: {region.y}, width: {region.width}, height: {region.height}}}"


class VisionService:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.prompts = PromptLibrary(settings.prompts_dir)
        self.sessions = SessionStore(
            max_sessions=settings.max_sessions, ttl_seconds=settings.session_ttl, on_evict=self._forget
        )
        self._backend = backend
        # A remote engine takes several calls at once; a model in this process one at a time. The class tells
        # before the engine is made (making it checks its settings, and that error belongs to the first call).
        remote = backend.remote if backend is not None else engine_class(settings).remote
        self.worker = InferenceWorker(parallel=settings.remote_concurrency if remote else 1)
        self._speeds: Speeds | None = None
        self._loading: asyncio.Future | None = None  # the model load, shared by the calls that wait for it
        self._load_started = 0.0

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = create_backend(self.settings)
        return self._backend

    # ------------------------------------------------------------ helpers

    def _max_new_tokens(self, value: int | None) -> int:
        if value is None:
            return self.settings.max_new_tokens
        if not 1 <= value <= limits.MAX_NEW_TOKENS_CAP:
            raise InputError(f"max_new_tokens={value} is out of range: use 1 to {limits.MAX_NEW_TOKENS_CAP}.")
        return value

    def _max_tiles(self, value: int | None) -> int:
        if value is None:
            return self.settings.max_tiles
        if not 1 <= value <= self.settings.max_tiles:
            raise InputError(f"max_tiles={value} is out of range: use 1 to {self.settings.max_tiles} (MCP_VISION_MAX_TILES).")
        return value

    @staticmethod
    def _question(value: str | None, default: str) -> str:
        if value is None or not value.strip():
            return default
        if len(value) > limits.MAX_QUESTION_CHARS:
            raise InputError(f"The question is {len(value):,} characters; the limit is {limits.MAX_QUESTION_CHARS:,}.")
        return value.strip()

    def _answer(self, result: ChatResult, session: Session, budget: Budget, dropped: int, fitted: Plan) -> dict:
        """The fields every model answer carries (see results.ModelAnswer)."""
        finish = result.finish_reason if result.finish_reason in {"length", "time"} else "stop"
        return {
            "answer": result.text,
            "session_id": session.id,
            "model": self.backend.model_name,
            "engine": result.engine,
            "usage": _usage(result),
            "finish_reason": finish,
            "seconds": round(budget.elapsed(), 3),
            "dropped_turns": dropped,
            "budget": BudgetReport(**fitted.as_dict()),
        }

    def _begin(self, session_id: str | None, time_budget: float | None = None) -> Budget:
        """The call's time budget (from now); fails before any work on an unknown or expired session."""
        budget = Budget.of(self.settings.call_budget, time_budget)
        if time_budget is not None and not 0 < time_budget <= limits.MAX_TIME_BUDGET:
            raise InputError(f"time_budget={time_budget:g} is out of range: use more than 0 to {limits.MAX_TIME_BUDGET:g} seconds.")
        self.sessions.check(session_id)
        return budget

    @property
    def speeds(self) -> Speeds:
        """What this process has measured (first guesses by the device, once the model is loaded)."""
        if self._speeds is None:
            counts = self.backend.parameter_counts()
            self._speeds = Speeds(self.backend.device or "cpu", *(counts or (None, None)))
        return self._speeds

    async def _ensure_loaded(self, budget: Budget, progress: Progress | None) -> None:
        """Have the model loaded (or the remote engine checked). A load that cannot finish within the call's
        budget goes on in the background, and the call says to come back (ModelLoading)."""
        backend = self.backend
        if backend.loaded:
            return
        failed = self._loading is not None and self._loading.done() and (
            self._loading.cancelled() or self._loading.exception() is not None
        )
        if self._loading is None or failed:
            self._load_started = time.monotonic()
            self._loading = asyncio.ensure_future(self.worker.run(backend.load, label="loading model"))
        while not self._loading.done():
            left = budget.remaining()
            if left is not None and left <= MARGIN_SECONDS:
                raise ModelLoading(
                    f"The model is still loading ({time.monotonic() - self._load_started:.0f} s so far, past this "
                    "call's time budget): call again in a minute; the loading goes on meanwhile."
                )
            wait = 2.0 if left is None else min(2.0, left - MARGIN_SECONDS)
            await asyncio.wait({self._loading}, timeout=max(wait, 0.05))
            if not self._loading.done() and progress is not None:
                await progress(0, None, f"loading model ({time.monotonic() - self._load_started:.0f} s)")
        self._loading.result()  # the load's own error, if it failed

    def _forget(self, session_id: str) -> None:
        if self._backend is not None:
            self._backend.forget(session_id)

    async def _run_model(self, fn: Callable[[Job], T], progress: Progress | None, budget: Budget | None = None) -> T:
        """Run model work on the inference worker; the work reports its own phases (reading images,
        generating) and its generation stops at the budget's deadline."""
        deadline = budget.deadline - MARGIN_SECONDS if budget is not None and budget.deadline is not None else None
        return await self.worker.run(fn, progress=progress, label="starting", deadline=deadline)

    async def _chat(
        self, turns: list[Turn], progress: Progress | None, max_new_tokens: int, budget: Budget,
        conversation: str | None = None,
    ) -> ChatResult:
        backend = self.backend
        result = await self._run_model(
            lambda job: backend.chat(turns, job, max_new_tokens=max_new_tokens, conversation=conversation),
            progress, budget,
        )
        self.speeds.learn(result)
        return result

    async def _fit(
        self, budget: Budget, progress: Progress | None, *, images: int = 0, tiles: int | None = None,
        frames: int | None = None, max_new_tokens: int, text_tokens: int = 200,
    ) -> Plan:
        """Have the model ready, then fit the call into what is left of its budget."""
        await self._ensure_loaded(budget, progress)
        return plan(
            budget, self.speeds, images=images, tiles=tiles, frames=frames, max_new_tokens=max_new_tokens,
            text_tokens=text_tokens, context=self.backend.context_length,
        )

    async def _ask(
        self, session: Session, user: Turn, progress: Progress | None, max_new_tokens: int, budget: Budget
    ) -> tuple[ChatResult, int]:
        """Ask `user` after the session's history; the oldest exchanges (and their media) are dropped when the
        history exceeds the session's bounds or the model's context. Returns (result, exchanges dropped)."""
        async with session.lock:
            for history, dropped in self.sessions.histories(session, [user]):
                try:
                    result = await self._chat([*history, user], progress, max_new_tokens, budget, conversation=session.id)
                    break
                except ContextOverflowError:
                    if not history:
                        raise
            self.sessions.commit(session, history, [user, Turn.assistant(result.history_text)], dropped)
            return result, dropped

    async def load_media(self, source: str, roots: Roots = None):
        """Read a source (in a thread: files and URLs block) inside the file boundary."""
        from .inputs.sources import load_media

        return await anyio.to_thread.run_sync(load_media, source, self.settings, roots)

    async def decode_image(self, media):
        """Decode an image's bytes in a decoder process (or here, when isolation is off)."""
        from .inputs.images import decode_image
        from .inputs.sandbox import run_isolated

        return await run_isolated(
            decode_image, media, self.settings.max_image_pixels,
            what=media.label, isolate=self.settings.isolate_decoding,
        )

    async def load_image(self, source: str, roots: Roots = None):
        return await self.decode_image(await self.load_media(source, roots))

    def warm_decoders(self) -> None:
        """Start a decoder process in the background, so the first decode does not wait for it."""
        if self.settings.isolate_decoding:
            from .inputs.sandbox import decoder_pool

            threading.Thread(target=decoder_pool().warm, name="mcp-vision-warm-decoders", daemon=True).start()

    async def preload(self) -> float:
        """Load the model now (and start a decoder process meanwhile) instead of on the first call."""
        self.warm_decoders()
        started = time.monotonic()
        await self._ensure_loaded(Budget(None), None)
        return time.monotonic() - started

    async def _ask_about_image(
        self, image: str, asked: str, region: Region | None, tiles: int, tokens: int, session_id: str | None,
        budget: Budget, progress: Progress | None, roots: Roots,
    ) -> _Asked:
        """Load one image, read `region` of it (or all of it) within the budget, and ask `asked` in the session."""
        decoded = await self.load_image(image, roots)
        picture, shown = crop(decoded, region)
        fitted = await self._fit(budget, progress, images=1, tiles=tiles, max_new_tokens=tokens)
        session = self.sessions.get_or_create(session_id)
        user = Turn.user(asked, [picture], max_tiles=fitted.tiles or tiles)
        result, dropped = await self._ask(session, user, progress, fitted.max_new_tokens, budget)
        return _Asked(decoded, shown, fitted, session, result, dropped)

    def _image_answer(self, asked: _Asked, budget: Budget, region: Region | None) -> dict:
        """The fields of an answer about one image: the model answer's, the image, the region read, its tiles."""
        decoded, result = asked.decoded, asked.result
        return {
            **self._answer(result, asked.session, budget, asked.dropped, asked.fitted),
            "image": ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format),
            "region": region,
            "tiles": result.tiles[0] if result.tiles else 0,
        }

    async def _keep_previews(self, session: Session, images: list, side: int) -> list[dict]:
        """Previews of `images` kept in the session for a viewer (MCP Apps): for each, in order, its resource URI
        and the size in pixels of the picture it shows (the preview itself is smaller)."""
        from . import previews

        encoded = await anyio.to_thread.run_sync(lambda: [previews.encode(image, side) for image in images])
        return [
            {"uri": previews.uri(session.id, self.sessions.keep_preview(session, data)), "width": image.width,
             "height": image.height}
            for image, data in zip(images, encoded)
        ]

    # ------------------------------------------------------------ tools

    async def describe_image(
        self,
        image: str,
        *,
        question: str | None = None,
        max_new_tokens: int | None = None,
        max_tiles: int | None = None,
        region: Region | None = None,
        session_id: str | None = None,
        time_budget: float | None = None,
        progress: Progress | None = None,
        roots: Roots = None,
        previews: bool = False,
    ) -> DescribeImageResult:
        """`previews`: also keep a preview of the image in the session for a viewer (see results.Viewable)."""
        tokens = self._max_new_tokens(max_new_tokens)
        tiles = self._max_tiles(max_tiles)
        asked = self._question(question, self.prompts.task("describe").text.strip())
        budget = self._begin(session_id, time_budget)
        asked_image = await self._ask_about_image(image, asked, region, tiles, tokens, session_id, budget, progress, roots)
        described = DescribeImageResult(
            **self._image_answer(asked_image, budget, region),
            load_seconds=round(asked_image.result.load_seconds, 3),
        )
        if previews:
            described._viewer = {"images": await self._image_previews(asked_image)}
        return described

    async def _image_previews(self, asked: _Asked) -> list[dict]:
        from .previews import IMAGE_SIDE

        return await self._keep_previews(asked.session, [asked.decoded.image], IMAGE_SIDE)

    async def locate(
        self,
        image: str,
        *,
        target: str | None = None,
        region: Region | None = None,
        max_tiles: int | None = None,
        max_new_tokens: int | None = None,
        session_id: str | None = None,
        time_budget: float | None = None,
        annotate: bool = True,
        progress: Progress | None = None,
        roots: Roots = None,
        previews: bool = False,
    ) -> Shown[LocateResult]:
        """Boxes around `target` (or every salient object), in pixels of the original image."""
        from .grounding import parse_boxes, to_pixels

        tokens = self._max_new_tokens(max_new_tokens)
        tiles = self._max_tiles(max_tiles)
        if target is not None and len(target) > limits.MAX_QUESTION_CHARS:
            raise InputError(f"The target is {len(target):,} characters; the limit is {limits.MAX_QUESTION_CHARS:,}.")
        wanted = (target or "").strip()
        asked = (
            self.prompts.task("locate").render(target=wanted).strip() if wanted
            else self.prompts.task("locate-all").text.strip()
        )
        budget = self._begin(session_id, time_budget)
        asked_image = await self._ask_about_image(image, asked, region, tiles, tokens, session_id, budget, progress, roots)
        decoded, shown = asked_image.decoded, asked_image.shown
        # Qwen2.5-VL's boxes are in pixels of the image as its processor resized it (the local engine says
        # which size that was); the normalised families ignore the size.
        sizes = asked_image.result.input_sizes
        parsed = parse_boxes(asked_image.result.text, self.grounding_family(), shown_size=sizes[0] if sizes else (shown[2], shown[3]))
        boxes = [b for b in (to_pixels(f, shown, (decoded.width, decoded.height)) for f in parsed.found) if b]
        found = [
            FoundBox(label=b.label or wanted, x=b.x, y=b.y, width=b.width, height=b.height,
                     center=Point(x=b.center[0], y=b.center[1]))
            for b in boxes
        ]
        located = LocateResult(
            **self._image_answer(asked_image, budget, region),
            boxes=found,
            dropped_boxes=parsed.dropped + len(parsed.found) - len(boxes),
        )
        if previews:
            located._viewer = {"images": await self._image_previews(asked_image)}
        drawn = None
        if annotate:
            from .inputs.annotate import annotate as draw

            marks = [(b.label, b.x, b.y, b.width, b.height) for b in found]  # annotate numbers them
            drawn = await anyio.to_thread.run_sync(lambda: draw(decoded.image, marks))
        return Shown(located, drawn)

    def grounding_family(self) -> str:
        """Whose box syntax the answers use (MCP_VISION_GROUNDING, else from the model)."""
        if self.settings.grounding != "auto":
            return self.settings.grounding
        return self.backend.grounding_family

    async def follow_up(
        self,
        session_id: str,
        question: str,
        *,
        max_new_tokens: int | None = None,
        time_budget: float | None = None,
        progress: Progress | None = None,
    ) -> FollowUpResult:
        tokens = self._max_new_tokens(max_new_tokens)
        if not question or not question.strip():
            raise InputError("The question is empty: say what you want to know about the session's media.")
        asked = self._question(question, question)  # checks the length; the question is never empty here
        budget = self._begin(None, time_budget)
        session = self.sessions.get(session_id)
        fitted = await self._fit(budget, progress, max_new_tokens=tokens, text_tokens=len(asked) // 3 + 50)
        user = Turn.user(asked)
        result, dropped = await self._ask(session, user, progress, fitted.max_new_tokens, budget)
        return FollowUpResult(
            **self._answer(result, session, budget, dropped, fitted),
            turns=session.turn_count,
        )

    async def ocr_document(
        self,
        document: str,
        *,
        pages: str | None = None,
        dpi: int = limits.DEFAULT_DPI,
        mode: str = "auto",
        max_new_tokens: int | None = None,
        region: Region | None = None,
        session_id: str | None = None,
        time_budget: float | None = None,
        progress: Progress | None = None,
        roots: Roots = None,
        previews: bool = False,
    ) -> OcrDocumentResult:
        from . import ocr
        from .inputs.images import ImagePages, is_multipage_candidate

        ocr.check_request(mode, dpi)
        budget = self._begin(session_id, time_budget)
        media = await self.load_media(document, roots)
        # A full page of text needs more room than a typical answer.
        tokens = (
            self._max_new_tokens(max_new_tokens) if max_new_tokens
            else max(self.settings.max_new_tokens, limits.OCR_MIN_TOKENS)
        )
        reader = ocr.PageReader(
            self._run_model, self.backend, self.prompts.task("ocr").text.strip(),
            max_tiles=self.settings.max_tiles, max_new_tokens=tokens, progress=progress,
            budget=budget, speeds=lambda: self.speeds, ready=lambda: self._ensure_loaded(budget, progress),
        )
        if region is not None and (media.kind in {"pdf", "unknown"} or is_multipage_candidate(media)):
            raise InputError(
                f"region reads part of a single page image, and {media.label} is a document of pages: omit region, "
                "or pass an image of the page."
            )
        if media.kind in {"pdf", "unknown"}:  # open_pdf says what an unknown file is, if not a PDF
            from .inputs.pdf import open_pdf

            doc = await open_pdf(media, isolate=self.settings.isolate_decoding)
            try:
                read = await ocr.read_pages(doc, pages, mode, dpi, self.settings, reader, progress)
                shown = await self._page_pictures(doc, read, reader) if previews else {}
            finally:
                await doc.aclose()
        elif is_multipage_candidate(media):  # a TIFF: every frame is a page (scanner and fax output)
            ocr.check_image_request(media, None, mode)
            frames = await ImagePages(media, self.settings.max_image_pixels, self.settings.isolate_decoding).open()
            try:
                ocr.check_image_request(media, pages, mode, frames.page_count)
                read = await ocr.read_pages(frames, pages, mode, dpi, self.settings, reader, progress)
                shown = await self._page_pictures(frames, read, reader) if previews else {}
            finally:
                await frames.aclose()
        else:
            ocr.check_image_request(media, pages, mode)
            decoded = await self.decode_image(media)
            picture, _ = crop(decoded, region)
            read = await ocr.read_image(picture, self.settings, reader, progress)
            shown = {1: decoded.image}  # the whole page; the viewer outlines the region read
        if progress is not None:
            await progress(len(read.pages), len(read.pages), "done")
        session = self.sessions.get_or_create(session_id)
        async with session.lock:
            self.sessions.append(session, ocr.session_turns(read, reader, media.label, self.prompts))
        document_read = OcrDocumentResult(
            pages=read.pages,
            region=region,
            page_count=read.page_count,
            session_id=session.id,
            model=self.backend.model_name,
            truncated=read.truncated,
            next_pages=read.next_pages,
            note=read.note,
            seconds=round(budget.elapsed(), 3),
        )
        if previews:
            from .previews import PAGE_SIDE

            numbers = [page.page for page in read.pages if page.page in shown]
            uris = await self._keep_previews(session, [shown[n] for n in numbers], PAGE_SIDE)
            document_read._viewer = {"pages": {str(n): u for n, u in zip(numbers, uris)}}
        return document_read

    async def _page_pictures(self, doc, read, reader) -> dict:
        """Each returned page as a picture: as the model saw it, or (a text-layer page) rendered small."""
        from .previews import PAGE_DPI

        pictures = {}
        for page in read.pages:
            part = reader.page_images.get(page.page)
            pictures[page.page] = (
                part.image if part is not None else await doc.render(page.page, PAGE_DPI, self.settings.max_image_pixels)
            )
        return pictures

    async def compare_images(
        self,
        images: list[str],
        *,
        question: str | None = None,
        max_new_tokens: int | None = None,
        session_id: str | None = None,
        time_budget: float | None = None,
        annotate: bool = True,
        progress: Progress | None = None,
        roots: Roots = None,
        previews: bool = False,
    ) -> Shown[CompareImagesResult]:
        from .compose import compare_parts
        from .inputs.diff import compare_pixels
        from .inputs.sandbox import run_isolated

        if not limits.MIN_COMPARE_IMAGES <= len(images) <= limits.MAX_COMPARE_IMAGES:
            raise InputError(
                f"{len(images)} images were given: compare_images takes "
                f"{limits.MIN_COMPARE_IMAGES} to {limits.MAX_COMPARE_IMAGES}."
            )
        tokens = self._max_new_tokens(max_new_tokens)
        asked = self._question(question, self.prompts.task("compare").text.strip())
        budget = self._begin(session_id, time_budget)
        decoded = [await self.load_image(source, roots) for source in images]
        if progress is not None:
            await progress(0, None, "measuring pixel differences")
        diffs = [
            await run_isolated(
                compare_pixels, decoded[0].image, d.image, what="the images", isolate=self.settings.isolate_decoding
            )
            for d in decoded[1:]
        ]
        # Share one tile budget between the images so the whole prompt fits the context.
        tiles = max(1, min(self.settings.max_tiles, limits.COMPARE_TILE_BUDGET // len(decoded)))
        fitted = await self._fit(budget, progress, images=len(decoded), tiles=tiles, max_new_tokens=tokens)
        parts = compare_parts(self.prompts, [d.image for d in decoded], diffs, fitted.tiles or tiles, asked)
        session = self.sessions.get_or_create(session_id)
        result, dropped = await self._ask(session, Turn("user", parts), progress, fitted.max_new_tokens, budget)
        compared = CompareImagesResult(
            **self._answer(result, session, budget, dropped, fitted),
            diffs=[
                ImageDiff(
                    image=index,
                    similarity=diff.similarity,
                    regions=[Region(x=b.x, y=b.y, width=b.width, height=b.height) for b in diff.regions],
                )
                for index, diff in enumerate(diffs, start=2)
            ],
            images=[ImageInfo(width=d.width, height=d.height, format=d.format) for d in decoded],
            tiles=result.tiles,
        )
        if previews:
            from .previews import IMAGE_SIDE

            compared._viewer = {"images": await self._keep_previews(session, [d.image for d in decoded], IMAGE_SIDE)}
        drawn = None
        if annotate:
            drawn = await anyio.to_thread.run_sync(
                lambda: _draw_changes([d.image for d in decoded[1:]], compared.diffs)
            )
        return Shown(compared, drawn)

    async def video_qa(
        self,
        video: str,
        *,
        question: str | None = None,
        num_frames: int = limits.DEFAULT_NUM_FRAMES,
        start: float | None = None,
        end: float | None = None,
        max_new_tokens: int | None = None,
        session_id: str | None = None,
        time_budget: float | None = None,
        progress: Progress | None = None,
        roots: Roots = None,
        previews: bool = False,
    ) -> VideoQaResult:
        from .compose import video_parts
        from .inputs.sandbox import DECODE_TIMEOUT, run_isolated
        from .inputs.video import sample_frames

        tokens = self._max_new_tokens(max_new_tokens)
        asked = self._question(question, self.prompts.task("video").text.strip())
        if not 1 <= num_frames <= self.settings.max_frames:
            raise InputError(f"num_frames={num_frames} is out of range: use 1 to {self.settings.max_frames} (MCP_VISION_MAX_FRAMES).")
        budget = self._begin(session_id, time_budget)
        media = await self.load_media(video, roots)
        if media.kind == "pdf":
            raise InputError(f"{media.label} is a PDF document, not a video: use ocr_document to read it.")
        fitted = await self._fit(budget, progress, frames=num_frames, max_new_tokens=tokens)
        frames = fitted.frames or num_frames
        if progress is not None:
            await progress(0, None, f"decoding {frames} frames")
        sample = await run_isolated(
            sample_frames, media, frames, start, end,
            max_frames=self.settings.max_frames, max_pixels=self.settings.max_image_pixels,
            time_budget=DECODE_TIMEOUT, timeout=DECODE_TIMEOUT + 15,  # sample_frames keeps its own budget first
            what=media.label, isolate=self.settings.isolate_decoding,
        )
        parts = video_parts(self.prompts, sample.frames, sample.timestamps, sample.duration, asked,
                            as_video=self.backend.takes_video)
        session = self.sessions.get_or_create(session_id)
        result, dropped = await self._ask(session, Turn("user", parts), progress, fitted.max_new_tokens, budget)
        answered = VideoQaResult(
            **self._answer(result, session, budget, dropped, fitted),
            frames=[FrameInfo(index=i, timestamp=round(t, 3)) for i, t in enumerate(sample.timestamps, start=1)],
            duration=round(sample.duration, 3),
            width=sample.width,
            height=sample.height,
        )
        if previews:
            from .previews import FRAME_SIDE

            answered._viewer = {"frames": await self._keep_previews(session, sample.frames, FRAME_SIDE)}
        return answered


def _draw_changes(images: list, diffs: list[ImageDiff]) -> bytes:
    """Images 2..N side by side (one height), each with its changed regions outlined and numbered."""
    from PIL import Image

    from .inputs.annotate import annotate

    height = min(768, max(image.height for image in images))
    gap = 8 if len(images) > 1 else 0  # white between the images
    scaled, marks, left = [], [], 0
    for image, diff in zip(images, diffs):
        factor = height / image.height
        width = max(1, round(image.width * factor))
        scaled.append((image.resize((width, height)) if factor != 1 else image, left))
        for r in diff.regions:
            marks.append((f"image {diff.image}", left + round(r.x * factor), round(r.y * factor),
                          max(1, round(r.width * factor)), max(1, round(r.height * factor))))
        left += width + gap
    strip = Image.new("RGB", (max(1, left - gap), height), "white")
    for image, offset in scaled:
        strip.paste(image, (offset, 0))
    return annotate(strip, marks)


def _usage(result: ChatResult) -> Usage:
    return Usage(
        prompt_tokens=result.prompt_tokens,
        image_tokens=result.image_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
    )


__all__ = ["VisionService"]
