"""The tools' logic, free of MCP: validate, load media, ask the backend, shape the result.

Each tool's path: service -> (ocr | inputs | sessions | model_prompts) -> backend. A tool's per-call values (its
session, time budget, progress, the client's roots, whether it shows previews) travel together as one `Call`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

from . import limits
from .backend import create_backend, engine_class
from .backend.base import Backend, ChatResult, Turn
from .budget import MARGIN_SECONDS, Budget, Plan, Speeds, plan
from .errors import ContextOverflowError, InputError, ModelLoading
from .metrics import Events
from .model_prompts import PromptLibrary
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


@dataclass(frozen=True)
class Principal:
    """Who calls. `key` owns the sessions the calls create and has its own share of the queue (None: the local
    user, over stdio or unauthenticated loopback HTTP); a `remote` caller (authenticated over HTTP, or anyone
    beyond loopback) sends media as data: URIs or URLs: server-side paths only inside MCP_VISION_REMOTE_ALLOWED_DIRS."""

    key: str | None = None
    remote: bool = False


LOCAL = Principal()


@dataclass
class Call:
    """What one tool call carries beside its own arguments: the session it continues (None: a new one), its
    time budget (from its arrival), where progress goes, the client's roots, whether the client shows
    previews (MCP Apps), and who calls."""

    session_id: str | None
    budget: Budget
    progress: Progress | None = None
    roots: Roots = None
    previews: bool = False
    principal: Principal = LOCAL
    load_seconds: float = 0.0  # spent waiting for the model to load during this call

    @property
    def owner(self) -> str | None:
        return self.principal.key


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
        self.events: Events = Events()  # what the work tells (the metrics, when serving HTTP)
        self.worker = InferenceWorker(
            parallel=settings.remote_concurrency if remote else 1, per_caller=settings.queue_per_caller,
            on_wait=lambda seconds: self.events.queue_wait(seconds),
        )
        self._speeds: Speeds | None = None
        self._loading: asyncio.Future | None = None  # the model load, shared by the calls that wait for it
        self._load_started = 0.0
        self.load_seconds = 0.0  # how long the model took to load (0 until it has)
        self._engine_error: str | None = None  # the last model call's failure on the engine, until one succeeds

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

    def _answer(self, result: ChatResult, session: Session, call: Call, dropped: int, fitted: Plan) -> dict:
        """The fields every model answer carries (see results.ModelAnswer)."""
        finish = result.finish_reason if result.finish_reason in {"length", "time"} else "stop"
        return {
            "answer": result.text,
            "session_id": session.id,
            "model": self.backend.model_name,
            "engine": result.engine,
            "usage": _usage(result),
            "finish_reason": finish,
            "seconds": round(call.budget.elapsed(), 3),
            "dropped_turns": dropped,
            "budget": BudgetReport(**fitted.as_dict()),
        }

    def _begin(
        self, session_id: str | None, time_budget: float | None = None, progress: Progress | None = None,
        roots: Roots = None, previews: bool = False, principal: Principal = LOCAL,
    ) -> Call:
        """The call, its time budget running from now; fails before any work on an unknown or expired session
        (or another principal's, with the same answer)."""
        budget = Budget.of(self.settings.call_budget, time_budget)
        if time_budget is not None and not 0 < time_budget <= limits.MAX_TIME_BUDGET:
            raise InputError(f"time_budget={time_budget:g} is out of range: use more than 0 to {limits.MAX_TIME_BUDGET:g} seconds.")
        self.sessions.check(session_id, principal.key)
        return Call(session_id, budget, progress, None if principal.remote else roots, previews, principal)

    # ------------------------------------------------------------ operations

    def readiness(self) -> dict:
        """For /readyz: ready once the model is loaded (the remote engine checked) and the last model call did
        not fail on the engine. Anyone may ask, so a failure is named by its kind only (no path, no address):
        the failing call itself was told the whole sentence."""
        backend = self._backend
        loading = self._loading is not None and not self._loading.done()
        if backend is None or not backend.loaded:
            reason = "the model is loading" if loading else (
                "the model is not loaded yet: it loads on the first call, or at start with --preload")
            if self._loading is not None and self._loading.done() and not self._loading.cancelled() \
                    and self._loading.exception() is not None:
                reason = f"the model failed to load ({type(self._loading.exception()).__name__}): the next call retries"
            return {"ready": False, "reason": reason}
        state = {"ready": self._engine_error is None, "engine": backend.engine,
                 "queued": self.worker.waiting, "running": self.worker.running}
        if self._engine_error is not None:
            state["reason"] = self._engine_error
        return state

    def engine_in_use(self) -> tuple[str, str]:
        """(engine, model) for the metrics: the engine class's name before anything is loaded."""
        if self._backend is not None:
            return self._backend.engine, self._backend.model_name
        engine = engine_class(self.settings)
        return engine.engine, (self.settings.remote_model or self.settings.model) if engine.remote else self.settings.model

    @property
    def speeds(self) -> Speeds:
        """What this process has measured (first guesses by the device, once the model is loaded)."""
        if self._speeds is None:
            counts = self.backend.parameter_counts()
            self._speeds = Speeds(self.backend.device or "cpu", *(counts or (None, None)),
                                  flops=self.backend.compute_rate())
        return self._speeds

    async def _ensure_loaded(self, budget: Budget, progress: Progress | None) -> float:
        """Have the model loaded (or the remote engine checked); return the seconds this call waited for it. A
        load that cannot finish within the call's budget goes on in the background, and the call says to come
        back (ModelLoading)."""
        backend = self.backend
        if backend.loaded:
            return 0.0
        waiting = time.monotonic()
        failed = self._loading is not None and self._loading.done() and (
            self._loading.cancelled() or self._loading.exception() is not None
        )
        if self._loading is None or failed:
            self._load_started = time.monotonic()
            self._loading = asyncio.ensure_future(self._load(backend))
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
        return time.monotonic() - waiting

    async def _load(self, backend: Backend) -> None:
        """Load on the worker (outside every caller's share: the load serves them all), timed for the metrics."""
        started = time.monotonic()
        await self.worker.run(backend.load, label="loading model", measured=False)
        self.load_seconds = time.monotonic() - started

    def _forget(self, session_id: str) -> None:
        if self._backend is not None:
            self._backend.forget(session_id)

    async def _chat(self, turns: list[Turn], call: Call, max_new_tokens: int, conversation: str | None = None) -> ChatResult:
        """Ask the model on the inference worker; the work reports its own phases (reading images, generating)
        and its generation stops at the budget's deadline."""
        backend = self.backend
        result = await self.watched(self.worker.run(
            lambda job: backend.chat(turns, job, max_new_tokens=max_new_tokens, conversation=conversation),
            progress=call.progress, label="starting", deadline=call.budget.work_deadline, caller=call.owner,
        ))
        self.speeds.learn(result)
        self.events.generated(result.output_tokens or 0)
        return result

    async def watched(self, work):
        """Await model work, remembering whether the engine failed (for /readyz); the caller's own errors
        (InputError) and refusals (busy) say nothing about the engine."""
        from .errors import BusyError, Cancelled, ModelUnavailableError

        try:
            result = await work
        except ModelUnavailableError as exc:
            self._engine_error = f"the last model call failed on the engine ({type(exc).__name__})"
            raise
        except (InputError, BusyError, Cancelled):
            raise
        except Exception as exc:
            self._engine_error = f"the last model call failed on the engine ({type(exc).__name__})"
            raise
        self._engine_error = None
        return result

    async def _ready(self, call: Call) -> Speeds:
        """Have the model loaded within the call's budget; the speeds measured so far."""
        call.load_seconds += await self._ensure_loaded(call.budget, call.progress)
        return self.speeds

    async def _fit(
        self, call: Call, *, images: int = 0, tiles: int | None = None, frames: int | None = None,
        max_new_tokens: int, text_tokens: int = 200,
    ) -> Plan:
        """Have the model ready, then fit the call into what is left of its budget."""
        speeds = await self._ready(call)
        return plan(
            call.budget, speeds, images=images, tiles=tiles, frames=frames, max_new_tokens=max_new_tokens,
            text_tokens=text_tokens, context=self.backend.context_length,
        )

    async def _ask(self, session: Session, user: Turn, call: Call, max_new_tokens: int) -> tuple[ChatResult, int]:
        """Ask `user` after the session's history; the oldest exchanges (and their media) are dropped when the
        history exceeds the session's bounds or the model's context. Returns (result, exchanges dropped)."""
        async with session.lock:
            for history, dropped in self.sessions.histories(session, [user]):
                try:
                    result = await self._chat([*history, user], call, max_new_tokens, conversation=session.id)
                    break
                except ContextOverflowError:
                    if not history:
                        raise
            self.sessions.commit(session, history, [user, Turn.assistant(result.history_text)], dropped)
            return result, dropped

    async def load_media(self, source: str, roots: Roots = None, principal: Principal = LOCAL):
        """Read a source (in a thread: files and URLs block) inside the file boundary (a remote caller's own)."""
        from .inputs.sources import load_media

        return await anyio.to_thread.run_sync(
            lambda: load_media(source, self.settings, roots, remote=principal.remote)
        )

    async def load_image(self, source: str, roots: Roots = None, principal: Principal = LOCAL) -> DecodedImage:
        """Read and decode an image (in a decoder process, or here when isolation is off)."""
        from .inputs.images import decode_isolated

        media = await self.load_media(source, roots, principal)
        return await decode_isolated(media, self.settings.max_image_pixels, isolate=self.settings.isolate_decoding)

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
        self, image: str, asked: str, call: Call, *, region: Region | None, tiles: int, tokens: int
    ) -> _Asked:
        """Load one image, read `region` of it (or all of it) within the budget, and ask `asked` in the session."""
        from .inputs.images import crop

        decoded = await self.load_image(image, call.roots, call.principal)
        picture, shown = crop(decoded, region)
        fitted = await self._fit(call, images=1, tiles=tiles, max_new_tokens=tokens)
        session = self.sessions.get_or_create(call.session_id, call.owner)
        user = Turn.user(asked, [picture], max_tiles=fitted.tiles or tiles)
        result, dropped = await self._ask(session, user, call, fitted.max_new_tokens)
        return _Asked(decoded, shown, fitted, session, result, dropped)

    def _image_answer(self, asked: _Asked, call: Call, region: Region | None) -> dict:
        """The fields of an answer about one image: the model answer's, the image, the region read, its tiles."""
        decoded, result = asked.decoded, asked.result
        return {
            **self._answer(result, asked.session, call, asked.dropped, asked.fitted),
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
        principal: Principal = LOCAL,
    ) -> DescribeImageResult:
        """`previews`: also keep a preview of the image in the session for a viewer (see results.Viewable)."""
        tokens = self._max_new_tokens(max_new_tokens)
        tiles = self._max_tiles(max_tiles)
        asked = self._question(question, self.prompts.task("describe").text.strip())
        call = self._begin(session_id, time_budget, progress, roots, previews, principal)
        asked_image = await self._ask_about_image(image, asked, call, region=region, tiles=tiles, tokens=tokens)
        described = DescribeImageResult(
            **self._image_answer(asked_image, call, region),
            load_seconds=round(asked_image.result.load_seconds + call.load_seconds, 3),
        )
        if call.previews:
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
        principal: Principal = LOCAL,
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
        call = self._begin(session_id, time_budget, progress, roots, previews, principal)
        asked_image = await self._ask_about_image(image, asked, call, region=region, tiles=tiles, tokens=tokens)
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
            **self._image_answer(asked_image, call, region),
            boxes=found,
            dropped_boxes=parsed.dropped + len(parsed.found) - len(boxes),
        )
        if call.previews:
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
        principal: Principal = LOCAL,
    ) -> FollowUpResult:
        tokens = self._max_new_tokens(max_new_tokens)
        if not question or not question.strip():
            raise InputError("The question is empty: say what you want to know about the session's media.")
        asked = self._question(question, question)  # checks the length; the question is never empty here
        call = self._begin(session_id, time_budget, progress, principal=principal)
        session = self.sessions.get(session_id, call.owner)
        fitted = await self._fit(call, max_new_tokens=tokens, text_tokens=len(asked) // 3 + 50)
        user = Turn.user(asked)
        result, dropped = await self._ask(session, user, call, fitted.max_new_tokens)
        return FollowUpResult(
            **self._answer(result, session, call, dropped, fitted),
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
        principal: Principal = LOCAL,
        figures: bool = False,
    ) -> OcrDocumentResult:
        from . import ocr

        ocr.check_request(mode, dpi)
        call = self._begin(session_id, time_budget, progress, roots, previews, principal)
        media = await self.load_media(document, call.roots, call.principal)
        # A full page of text needs more room than a typical answer.
        tokens = (
            self._max_new_tokens(max_new_tokens) if max_new_tokens
            else max(self.settings.max_new_tokens, limits.OCR_MIN_TOKENS)
        )
        # The model loads only when a page needs it: a document read from its text layers never loads it.
        reader = ocr.PageReader(
            self.worker, self.backend, self.prompts.task("ocr").text.strip(), partial(self._ready, call),
            max_tiles=self.settings.max_tiles, max_new_tokens=tokens, progress=call.progress, budget=call.budget,
            caller=call.owner, watch=self.watched, events=self.events,
            region_prompt=self.prompts.scaffold("ocr_region"),
            anchored=lambda text: self.prompts.scaffold("ocr_anchor", text_layer=text),
            figure_prompt=lambda caption: self.prompts.scaffold(
                "ocr_figure", caption=f" (its caption reads: \"{caption}\")" if caption else ""
            ),
        )
        read = await ocr.read_document(
            media, pages=pages, mode=mode, dpi=dpi, region=region, settings=self.settings, reader=reader,
            pictures=call.previews, figures=figures,
        )
        session = self.sessions.get_or_create(call.session_id, call.owner)
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
            seconds=round(call.budget.elapsed(), 3),
        )
        if call.previews:
            from .previews import PAGE_SIDE

            uris = await self._keep_previews(session, list(read.pictures.values()), PAGE_SIDE)
            document_read._viewer = {"pages": {str(n): u for n, u in zip(read.pictures, uris)}}
        return document_read

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
        principal: Principal = LOCAL,
    ) -> Shown[CompareImagesResult]:
        from .model_prompts import compare_parts
        from .inputs.diff import compare_pixels
        from .inputs.sandbox import run_isolated

        if not limits.MIN_COMPARE_IMAGES <= len(images) <= limits.MAX_COMPARE_IMAGES:
            raise InputError(
                f"{len(images)} images were given: compare_images takes "
                f"{limits.MIN_COMPARE_IMAGES} to {limits.MAX_COMPARE_IMAGES}."
            )
        tokens = self._max_new_tokens(max_new_tokens)
        asked = self._question(question, self.prompts.task("compare").text.strip())
        call = self._begin(session_id, time_budget, progress, roots, previews, principal)
        decoded = [await self.load_image(source, call.roots, call.principal) for source in images]
        if call.progress is not None:
            await call.progress(0, None, "measuring pixel differences")
        diffs = [
            await run_isolated(
                compare_pixels, decoded[0].image, d.image, what="the images", isolate=self.settings.isolate_decoding
            )
            for d in decoded[1:]
        ]
        # Share one tile budget between the images so the whole prompt fits the context.
        tiles = max(1, min(self.settings.max_tiles, limits.COMPARE_TILE_BUDGET // len(decoded)))
        fitted = await self._fit(call, images=len(decoded), tiles=tiles, max_new_tokens=tokens)
        parts = compare_parts(self.prompts, [d.image for d in decoded], diffs, fitted.tiles or tiles, asked)
        session = self.sessions.get_or_create(call.session_id, call.owner)
        result, dropped = await self._ask(session, Turn("user", parts), call, fitted.max_new_tokens)
        compared = CompareImagesResult(
            **self._answer(result, session, call, dropped, fitted),
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
        if call.previews:
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
        principal: Principal = LOCAL,
    ) -> VideoQaResult:
        from .model_prompts import video_parts
        from .inputs.sandbox import DECODE_TIMEOUT, run_isolated
        from .inputs.video import check_num_frames, check_video, sample_frames

        tokens = self._max_new_tokens(max_new_tokens)
        asked = self._question(question, self.prompts.task("video").text.strip())
        check_num_frames(num_frames, self.settings.max_frames)
        call = self._begin(session_id, time_budget, progress, roots, previews, principal)
        media = await self.load_media(video, call.roots, call.principal)
        if media.kind == "pdf":
            raise InputError(f"{media.label} is a PDF document, not a video: use ocr_document to read it.")
        check_video(media, start, end)  # before the model loads: a wrong file or span is refused at once
        fitted = await self._fit(call, frames=num_frames, max_new_tokens=tokens)
        frames = fitted.frames or num_frames
        if call.progress is not None:
            await call.progress(0, None, f"decoding {frames} frames")
        sample = await run_isolated(
            sample_frames, media, frames, start, end,
            max_frames=self.settings.max_frames, max_pixels=self.settings.max_image_pixels,
            time_budget=DECODE_TIMEOUT, timeout=DECODE_TIMEOUT + 15,  # sample_frames keeps its own budget first
            what=media.label, isolate=self.settings.isolate_decoding,
        )
        parts = video_parts(self.prompts, sample.frames, sample.timestamps, sample.duration, asked,
                            as_video=self.backend.takes_video)
        session = self.sessions.get_or_create(call.session_id, call.owner)
        result, dropped = await self._ask(session, Turn("user", parts), call, fitted.max_new_tokens)
        answered = VideoQaResult(
            **self._answer(result, session, call, dropped, fitted),
            frames=[FrameInfo(index=i, timestamp=round(t, 3)) for i, t in enumerate(sample.timestamps, start=1)],
            duration=round(sample.duration, 3),
            width=sample.width,
            height=sample.height,
        )
        if call.previews:
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


__all__ = ["VisionService", "Principal", "LOCAL"]
