"""The tools' logic, free of MCP: validate, load media, ask the backend, shape the result."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from .backend.base import Backend, ChatResult, ImagePart, Turn
from .errors import ContextOverflowError, InputError
from .prompts import PromptLibrary
from .results import (
    CompareImagesResult,
    DescribeImageResult,
    FollowUpResult,
    FrameInfo,
    ImageDiff,
    ImageInfo,
    OcrDocumentResult,
    PageText,
    Region,
    Usage,
    VideoQaResult,
)
from .sessions import Session, SessionStore
from .settings import Settings
from .worker import InferenceWorker, Job

T = TypeVar("T")
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
Roots = tuple[Path, ...] | None  # the client's root directories: they narrow the allowed directories

MAX_NEW_TOKENS_CAP = 8192
MAX_QUESTION_CHARS = 20_000
OCR_MIN_TOKENS = 1024  # default answer room for a page read by the model
COMPARE_TILE_BUDGET = 24  # tiles shared by the images of one comparison (256 tokens each)


class VisionService:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.prompts = PromptLibrary(settings.prompts_dir)
        self.sessions = SessionStore(
            max_sessions=settings.max_sessions, ttl_seconds=settings.session_ttl, on_evict=self._forget
        )
        remote = settings.backend == "openai"
        self.worker = InferenceWorker(parallel=settings.remote_concurrency if remote else 1)
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from .backend import create_backend

            self._backend = create_backend(self.settings)
        return self._backend

    # ------------------------------------------------------------ helpers

    def _max_new_tokens(self, value: int | None) -> int:
        if value is None:
            return self.settings.max_new_tokens
        if not 1 <= value <= MAX_NEW_TOKENS_CAP:
            raise InputError(f"max_new_tokens={value} is out of range: use 1 to {MAX_NEW_TOKENS_CAP}.")
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
        if len(value) > MAX_QUESTION_CHARS:
            raise InputError(f"The question is {len(value):,} characters; the limit is {MAX_QUESTION_CHARS:,}.")
        return value.strip()

    def _answer(self, result: ChatResult, session: Session, started: float, dropped: int) -> dict:
        """The fields every model answer carries (see results.ModelAnswer)."""
        return {
            "answer": result.text,
            "session_id": session.id,
            "model": self.backend.model_name,
            "usage": _usage(result),
            "finish_reason": "length" if result.finish_reason == "length" else "stop",
            "seconds": round(time.monotonic() - started, 3),
            "dropped_turns": dropped,
        }

    def _forget(self, session_id: str) -> None:
        if self._backend is not None:
            self._backend.forget(session_id)

    async def _run_model(self, fn: Callable[[Job], T], progress: Progress | None) -> T:
        """Run model work on the inference worker (loading the model first if needed)."""
        label = "loading model" if not self.backend.loaded else "generating"
        return await self.worker.run(fn, progress=progress, label=label)

    async def _chat(
        self, turns: list[Turn], progress: Progress | None, max_new_tokens: int, conversation: str | None = None
    ) -> ChatResult:
        backend = self.backend
        return await self._run_model(
            lambda job: backend.chat(turns, job, max_new_tokens=max_new_tokens, conversation=conversation), progress
        )

    async def _ask(
        self, session: Session, user: Turn, progress: Progress | None, max_new_tokens: int
    ) -> tuple[ChatResult, int]:
        """Ask `user` after the session's history; drop the oldest exchanges (and their media) when the
        history exceeds the session's bounds or the model's context. Returns (result, exchanges dropped)."""
        async with session.lock:
            history = list(session.turns)
            dropped = 0
            while history and not self.sessions.fits([*history, user]):
                history, dropped = history[2:], dropped + 1
            while True:
                try:
                    result = await self._chat([*history, user], progress, max_new_tokens, conversation=session.id)
                    break
                except ContextOverflowError:
                    if not history:
                        raise
                    history, dropped = history[2:], dropped + 1
            session.turns = [*history, user, Turn.assistant(result.history_text)]
            session.dropped_turns += dropped
            return result, dropped

    async def load_media(self, source: str, roots: Roots = None):
        """Read a source (in a thread: files and URLs block) inside the file boundary."""
        from .media import load_media

        return await anyio.to_thread.run_sync(load_media, source, self.settings, roots)

    async def decode_image(self, media):
        """Decode an image's bytes in a decoder worker (or here, when isolation is off)."""
        from .images import decode_image
        from .sandbox import run_isolated

        return await run_isolated(
            decode_image, media, self.settings.max_image_pixels,
            what=media.label, isolate=self.settings.isolate_decoding,
        )

    async def load_image(self, source: str, roots: Roots = None):
        return await self.decode_image(await self.load_media(source, roots))

    def warm_decoders(self) -> None:
        """Start a decoder worker in the background, so the first decode does not wait for it."""
        if self.settings.isolate_decoding:
            from .sandbox import decoder_pool

            threading.Thread(target=decoder_pool().warm, name="mcp-vision-warm-decoders", daemon=True).start()

    async def preload(self) -> float:
        """Load the model now (and start a decoder worker meanwhile) instead of on the first call."""
        self.warm_decoders()
        backend = self.backend
        return await self.worker.run(backend.load, label="loading model")

    # ------------------------------------------------------------ tools

    async def describe_image(
        self,
        image: str,
        question: str | None = None,
        max_new_tokens: int | None = None,
        max_tiles: int | None = None,
        session_id: str | None = None,
        progress: Progress | None = None,
        roots: Roots = None,
    ) -> DescribeImageResult:
        started = time.monotonic()
        tokens = self._max_new_tokens(max_new_tokens)
        tiles = self._max_tiles(max_tiles)
        asked = self._question(question, self.prompts.task("describe").text.strip())
        if session_id:
            self.sessions.get(session_id)  # fail before any work on an unknown session
        decoded = await self.load_image(image, roots)
        session = self.sessions.get_or_create(session_id)
        user = Turn.user(asked, [decoded.image], max_tiles=tiles)
        result, dropped = await self._ask(session, user, progress, tokens)
        return DescribeImageResult(
            **self._answer(result, session, started, dropped),
            image=ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format),
            tiles=result.tiles[0] if result.tiles else 0,
            load_seconds=round(result.load_seconds, 3),
        )

    async def follow_up(
        self,
        session_id: str,
        question: str,
        max_new_tokens: int | None = None,
        progress: Progress | None = None,
    ) -> FollowUpResult:
        started = time.monotonic()
        tokens = self._max_new_tokens(max_new_tokens)
        if not question or not question.strip():
            raise InputError("The question is empty: say what you want to know about the session's media.")
        asked = self._question(question, question)  # checks the length; the question is never empty here
        session = self.sessions.get(session_id)
        user = Turn.user(asked)
        result, dropped = await self._ask(session, user, progress, tokens)
        return FollowUpResult(
            **self._answer(result, session, started, dropped),
            turns=session.turn_count,
        )

    async def ocr_document(
        self,
        document: str,
        pages: str | None = None,
        dpi: int = 150,
        mode: str = "auto",
        session_id: str | None = None,
        progress: Progress | None = None,
        max_new_tokens: int | None = None,
        roots: Roots = None,
    ) -> OcrDocumentResult:
        from .documents import parse_pages
        from .sandbox import open_pdf

        started = time.monotonic()
        if mode not in {"auto", "text_layer", "vision"}:
            raise InputError(f"mode={mode!r} is not one of: auto, text_layer, vision.")
        if not 36 <= dpi <= 600:
            raise InputError(f"dpi={dpi} is out of range: use 36 to 600 (150 reads most pages well).")
        if session_id:
            self.sessions.get(session_id)
        media = await self.load_media(document, roots)
        prompt = self.prompts.task("ocr").text.strip()
        # A full page of text needs more room than a typical answer.
        tokens = self._max_new_tokens(max_new_tokens) if max_new_tokens else max(self.settings.max_new_tokens, OCR_MIN_TOKENS)
        reader = _PageReader(self, prompt, tokens, progress)
        if media.kind in {"pdf", "unknown"}:  # open_document says what an unknown file is, if not a PDF
            doc = await open_pdf(media, isolate=self.settings.isolate_decoding)
            try:
                page_count = doc.page_count
                selected = parse_pages(pages, page_count)
                if len(selected) > self.settings.max_pages:
                    raise InputError(
                        f"{len(selected)} pages were asked for; the limit is {self.settings.max_pages} a call "
                        f"(MCP_VISION_MAX_PAGES): ask for a range such as pages=\"{selected[0]}-"
                        f"{selected[self.settings.max_pages - 1]}\"."
                    )
                results, truncated, note = await self._read_pages(doc, selected, mode, dpi, reader, progress)
            finally:
                doc.close()
        else:
            if mode == "text_layer":
                raise InputError(f"{media.label} is an image, which has no text layer: use mode='auto' or 'vision'.")
            if pages not in (None, "", "1"):
                raise InputError(f"{media.label} is a single image (1 page): omit pages or pass pages=\"1\".")
            decoded = await self.decode_image(media)
            page_count = 1
            if progress is not None:
                await progress(0, 1, "page 1 (1/1)")
            [text] = await reader.read([decoded.image], [1], "page 1 (1/1)", 0, 1)
            cap = self.settings.max_output_chars
            truncated, note = len(text) > cap, None
            if truncated:
                text = text[:cap]
                note = f"Output was cut at the {cap:,} character cap (MCP_VISION_MAX_OUTPUT_CHARS)."
            results = [PageText(page=1, method="vision", text=text)]
        if progress is not None:
            await progress(len(results), len(results), "done")
        session = self.sessions.get_or_create(session_id)
        numbers = ", ".join(str(r.page) for r in results)
        async with session.lock:
            shown = [reader.page_images[r.page] for r in results if r.page in reader.page_images]
            self.sessions.append(session, [
                Turn("user", [*shown, f"Read the document pages {numbers} ({media.label}) as Markdown."]),
                Turn.assistant("\n\n".join(f"## Page {r.page}\n\n{r.text}" for r in results)),
            ])
        return OcrDocumentResult(
            pages=results,
            page_count=page_count,
            session_id=session.id,
            model=self.backend.model_name,
            truncated=truncated,
            note=note,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _read_pages(
        self, doc, selected: list[int], mode: str, dpi: int, reader: _PageReader, progress: Progress | None
    ) -> tuple[list[PageText], bool, str | None]:
        """The pages' text in order: text layers at once, the others through the model, up to
        MCP_VISION_OCR_BATCH of them in one batch; stops at the output cap with a note saying what is left."""
        results: list[PageText] = []
        budget = self.settings.max_output_chars
        total = len(selected)
        position = done = 0  # pages looked at; pages whose text is known (the progress shown)
        while position < total:
            chunk: list[list] = []  # [index in selected, page number, method, text]
            images: list = []
            known = 0  # characters of the chunk's text-layer pages
            while position < total and len(images) < self.settings.ocr_batch and known < budget:
                number = selected[position]
                if progress is not None:
                    await progress(done, total, f"page {number} ({position + 1}/{total})")
                if mode == "text_layer" or (mode == "auto" and await doc.has_text_layer(number)):
                    text = await doc.text_layer(number)
                    known += len(text)
                    done += 1
                    chunk.append([position, number, "text_layer", text])
                else:
                    images.append(await doc.render(number, dpi, self.settings.max_image_pixels))
                    chunk.append([position, number, "vision", None])
                position += 1
            if images:
                read = [entry for entry in chunk if entry[2] == "vision"]
                numbers = [entry[1] for entry in read]
                shown = ", ".join(map(str, numbers))
                label = f"page {shown}" if len(read) == 1 else f"pages {shown} ({len(read)} together)"
                for entry, text in zip(read, await reader.read(images, numbers, f"{label} of {total}", done, total)):
                    entry[3] = text
                done += len(read)
            for index, number, method, text in chunk:
                cut = len(text) > budget
                text = text[:budget]
                budget -= len(text)
                results.append(PageText(page=number, method=method, text=text))
                if cut or (budget <= 0 and index + 1 < total):
                    rest = selected[index if cut else index + 1 :]
                    return results, True, (
                        f"Output reached the {self.settings.max_output_chars:,} character cap "
                        f"(MCP_VISION_MAX_OUTPUT_CHARS) at page {number}: call again with "
                        f"pages=\"{rest[0]}-{rest[-1]}\" for the rest."
                    )
        return results, False, None

    async def compare_images(
        self,
        images: list[str],
        question: str | None = None,
        max_new_tokens: int | None = None,
        session_id: str | None = None,
        progress: Progress | None = None,
        roots: Roots = None,
    ) -> CompareImagesResult:
        from .diff import compare_pixels, describe_regions
        from .sandbox import run_isolated

        started = time.monotonic()
        if not 2 <= len(images) <= 4:
            raise InputError(f"{len(images)} images were given: compare_images takes 2 to 4.")
        tokens = self._max_new_tokens(max_new_tokens)
        asked = self._question(question, self.prompts.task("compare").text.strip())
        if session_id:
            self.sessions.get(session_id)
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
        tiles = max(1, min(self.settings.max_tiles, COMPARE_TILE_BUDGET // len(decoded)))
        parts: list = []
        for index, d in enumerate(decoded, start=1):
            parts += [f"Image-{index}: ", ImagePart(d.image, tiles)]
        measured = " ".join(describe_regions(diff, index) for index, diff in enumerate(diffs, start=2))
        parts.append(f"Measured pixel differences (coordinates in each image's own pixels): {measured}\n{asked}")
        session = self.sessions.get_or_create(session_id)
        user = Turn("user", parts)
        result, dropped = await self._ask(session, user, progress, tokens)
        return CompareImagesResult(
            **self._answer(result, session, started, dropped),
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

    async def video_qa(
        self,
        video: str,
        question: str | None = None,
        num_frames: int = 8,
        start: float | None = None,
        end: float | None = None,
        max_new_tokens: int | None = None,
        session_id: str | None = None,
        progress: Progress | None = None,
        roots: Roots = None,
    ) -> VideoQaResult:
        from .sandbox import DECODE_TIMEOUT, run_isolated
        from .video import sample_frames

        started = time.monotonic()
        tokens = self._max_new_tokens(max_new_tokens)
        asked = self._question(question, self.prompts.task("video").text.strip())
        if not 1 <= num_frames <= self.settings.max_frames:
            raise InputError(f"num_frames={num_frames} is out of range: use 1 to {self.settings.max_frames} (MCP_VISION_MAX_FRAMES).")
        if session_id:
            self.sessions.get(session_id)
        media = await self.load_media(video, roots)
        if media.kind == "pdf":
            raise InputError(f"{media.label} is a PDF document, not a video: use ocr_document to read it.")
        if progress is not None:
            await progress(0, None, f"decoding {num_frames} frames")
        sample = await run_isolated(
            sample_frames, media, num_frames, start, end,
            max_frames=self.settings.max_frames, max_pixels=self.settings.max_image_pixels,
            time_budget=DECODE_TIMEOUT, timeout=DECODE_TIMEOUT + 15,  # sample_frames keeps its own budget first
            what=media.label, isolate=self.settings.isolate_decoding,
        )
        parts: list = []
        for index, frame in enumerate(sample.frames, start=1):
            parts += [f"Frame{index}: ", ImagePart(frame, 1)]
        times = ", ".join(f"Frame{i}: {t:.2f} s" for i, t in enumerate(sample.timestamps, start=1))
        parts.append(f"The frames were taken at {times} of a {sample.duration:.2f} s video.\n{asked}")
        session = self.sessions.get_or_create(session_id)
        user = Turn("user", parts)
        result, dropped = await self._ask(session, user, progress, tokens)
        return VideoQaResult(
            **self._answer(result, session, started, dropped),
            frames=[FrameInfo(index=i, timestamp=round(t, 3)) for i, t in enumerate(sample.timestamps, start=1)],
            duration=round(sample.duration, 3),
            width=sample.width,
            height=sample.height,
        )


class _PageReader:
    """Reads page images with the model, several in one batch, and keeps each as it was shown to it."""

    def __init__(self, service: VisionService, prompt: str, max_new_tokens: int, progress: Progress | None) -> None:
        self.service, self.prompt, self.max_new_tokens, self.progress = service, prompt, max_new_tokens, progress
        self.page_images: dict[int, ImagePart] = {}

    async def read(self, images: list, numbers: list[int], label: str, index: float, total: int) -> list[str]:
        """The text of each image, in order; progress runs from `index` to `index + len(images)` of `total`."""
        progress = self.progress

        async def inner(p: float, t: float | None, message: str | None) -> None:
            if progress is not None:
                fraction = min(p / t, 1.0) if t else 0.0
                await progress(index + fraction * len(images), total, f"{label}: {message}" if message else label)

        parts = [ImagePart(image, self.service.settings.max_tiles) for image in images]
        self.page_images.update(zip(numbers, parts))
        conversations = [[Turn("user", [part, self.prompt])] for part in parts]
        backend, tokens = self.service.backend, self.max_new_tokens
        answers = await self.service._run_model(
            lambda job: backend.chat_batch(conversations, job, max_new_tokens=tokens), inner
        )
        return [answer.text for answer in answers]


def _usage(result: ChatResult) -> Usage:
    return Usage(
        prompt_tokens=result.prompt_tokens,
        image_tokens=result.image_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
    )


__all__ = ["VisionService"]
