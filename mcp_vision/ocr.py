"""ocr_document's pages, from the opened file to the text: which pages, read how (the text layer or the model),
in what batches, rendered at what resolution, where the output cap or the time budget stops the reading, what
progress says of each page, and the picture of each page a viewer previews. MCP-free; the model is reached
through the inference worker, and loaded through a hook the service hands in (only it knows the load)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import limits
from .backend.base import Backend, ChatResult, ImagePart, Turn
from .budget import MARGIN_SECONDS, Budget, Speeds, tiles_read
from .errors import InputError
from .results import PageText
from .metrics import Events
from .worker import Caller, InferenceWorker, Progress

if TYPE_CHECKING:
    from .inputs.images import ImagePages
    from .inputs.pdf import PdfPages
    from .inputs.sources import Media
    from .model_prompts import PromptLibrary
    from .results import Region
    from .settings import Settings

# Has the model loaded (within the call's budget) and returns the speeds measured so far.
Prepare = Callable[[], Awaitable[Speeds]]

# Text-layer pages laid out as Markdown in one round trip to the decoder process: heading levels agree within a
# batch, and progress still moves every few seconds.
LAYOUT_BATCH = 4
# Seconds per page of the layout step before any is measured: about 1.5 pages/s on 2 shared cores (DESIGN.md).
LAYOUT_SECONDS_GUESS = 0.7
# The decoder's wall-clock limit for one batch, per page: a page that takes this long is hostile or pathological.
LAYOUT_TIMEOUT_PER_PAGE = 20.0


class LayoutPace:
    """Seconds per page of the layout step as measured on this machine, so the time budget plans with its real
    speed (one per process: every call learns from the last)."""

    def __init__(self, seconds_per_page: float = LAYOUT_SECONDS_GUESS) -> None:
        self.seconds_per_page = seconds_per_page

    def learn(self, seconds: float, pages: int) -> None:
        # Half the old estimate, half the new: one slow batch (a busy core) neither rules nor is forgotten.
        self.seconds_per_page = 0.5 * self.seconds_per_page + 0.5 * seconds / max(1, pages)

    def fits(self, budget: Budget, pages: int) -> bool:
        """Whether `pages` more pages can be laid out in the time `budget` has left."""
        left = budget.remaining()
        return left is None or pages * self.seconds_per_page <= left - MARGIN_SECONDS


LAYOUT_PACE = LayoutPace()


def check_request(mode: str, dpi: int) -> None:
    """Refuse a mode or dpi the tool does not take, before any work."""
    if mode not in limits.OCR_MODES:
        raise InputError(f"mode={mode!r} is not one of: {', '.join(limits.OCR_MODES)}.")
    if not limits.MIN_DPI <= dpi <= limits.MAX_DPI:
        raise InputError(
            f"dpi={dpi} is out of range: use {limits.MIN_DPI} to {limits.MAX_DPI} "
            f"({limits.DEFAULT_DPI} reads most pages well)."
        )


class PageReader:
    """Reads page images with the model, several in one batch, and keeps each as it was shown to it."""

    def __init__(
        self, worker: InferenceWorker, backend: Backend, prompt: str, prepare: Prepare, *, max_tiles: int,
        max_new_tokens: int, progress: Progress | None, budget: Budget, caller: Caller = None,
        watch: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None, events: Events | None = None,
    ) -> None:
        """`caller`: whose turn in the worker's queue each batch takes; `watch` wraps each batch (the service
        notes engine failures); `events` hears the tokens written."""
        self._worker, self._backend, self._prompt, self._prepare = worker, backend, prompt, prepare
        self._caller, self._watch, self._events = caller, watch, events or Events()
        self._max_tiles, self._max_new_tokens, self._progress = max_tiles, max_new_tokens, progress
        self.budget = budget
        self._speeds: Speeds | None = None  # known once the model is ready
        self.page_images: dict[int, ImagePart] = {}
        self.seconds_per_page: float | None = None  # measured on the batches read so far
        self.predicted: tuple[float, float] | None = None  # (seconds, seconds left) of a page not started

    async def report(self, done: float, total: float | None, message: str) -> None:
        """Progress of the pages, in this module's words (nothing when the client asked for none)."""
        if self._progress is not None:
            await self._progress(done, total, message)

    async def prepare(self) -> None:
        """Before the first page goes to the model: have it loaded (within the budget)."""
        if self._speeds is None:
            self._speeds = await self._prepare()

    def pages_that_fit(self, wanted: int, first: bool) -> int:
        """How many of `wanted` pages the time left allows in one batch (the first batch reads at least one)."""
        left = self.budget.remaining()
        if left is None:
            return wanted
        usable = left - MARGIN_SECONDS  # generation stops that much before the deadline
        one: float | None = None  # the predicted seconds of one page
        if self.seconds_per_page is not None:
            one = self.seconds_per_page
            fits = int(usable / one)
        elif self._speeds is not None:
            speeds = self._speeds
            tiles = tiles_read(self._max_tiles)

            def cost(n: int) -> float:
                return n * speeds.upfront(tiles, 100) + speeds.answer(self._max_new_tokens)

            one = cost(1)
            fits = max((n for n in range(wanted + 1) if cost(n) <= usable), default=0)
        else:
            fits = wanted
        fits = max(1 if first else 0, min(wanted, fits))
        self.predicted = (one, max(left, 0.0)) if fits == 0 and one is not None else None
        return fits

    async def read(self, images: list, numbers: list[int], label: str, index: float, total: int) -> list[ChatResult]:
        """The answer for each image, in order; progress runs from `index` to `index + len(images)` of `total`."""

        async def inner(p: float, t: float | None, message: str | None) -> None:
            fraction = min(p / t, 1.0) if t else 0.0
            await self.report(index + fraction * len(images), total, f"{label}: {message}" if message else label)

        parts = [ImagePart(image, self._max_tiles) for image in images]
        self.page_images.update(zip(numbers, parts))
        conversations = [[Turn("user", [part, self._prompt])] for part in parts]
        backend, tokens = self._backend, self._max_new_tokens
        started = time.monotonic()
        work = self._worker.run(
            lambda job: backend.chat_batch(conversations, job, max_new_tokens=tokens),
            progress=inner, label="starting", deadline=self.budget.work_deadline, caller=self._caller,
        )
        answers = await (self._watch(work) if self._watch is not None else work)
        self._events.generated(sum(answer.output_tokens or 0 for answer in answers))
        self.seconds_per_page = (time.monotonic() - started) / max(1, len(images))
        if self._speeds is not None and answers:
            self._speeds.learn(answers[0])  # the batch's stages are shared by its rows
        return answers


def page_ranges(numbers: list[int]) -> str:
    """The shortest `pages` value for these page numbers: [3, 4, 5, 7] -> "3-5,7"."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass
class _Output:
    """The pages kept so far, the characters still allowed (MCP_VISION_MAX_OUTPUT_CHARS), and, once reading
    stops early (the output cap or the time budget), the note and the `pages` value that asks for the rest."""

    cap: int
    selected: list[int]
    left: int = field(init=False)
    note: str | None = None
    next_pages: str | None = None
    pages: list[PageText] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.left = self.cap

    @property
    def truncated(self) -> bool:
        return self.next_pages is not None or self.note is not None

    def take(
        self, index: int, number: int, method: str, text: str, header: str | None = None, footer: str | None = None
    ) -> bool:
        """Keep the page at `index` of the selection, cut to what is left; False once the cap is reached."""
        cut = len(text) > self.left
        text = text[: self.left]
        self.left -= len(text)
        self.pages.append(PageText(page=number, method=method, text=text, header=header or None, footer=footer or None))
        more = index + 1 < len(self.selected)
        if not (cut or (self.left <= 0 and more)):
            return True
        rest = self.selected[index if cut else index + 1 :]
        where = f"MCP_VISION_MAX_OUTPUT_CHARS) at page {number}"
        if rest == [number] and len(self.selected) == 1:  # the only page: asking again would cut it again
            self.note = f"Output was cut at the {self.cap:,} character cap ({where}."
        else:
            self.next_pages = page_ranges(rest)
            self.note = (
                f"Output reached the {self.cap:,} character cap ({where}: call again with "
                f"pages=\"{self.next_pages}\" for the rest."
            )
        return False

    def stop_for_time(self, index: int, budget: Budget, cut_page: int | None = None,
                      predicted: tuple[float, float] | None = None) -> None:
        """Reading stops before the page at `index` of the selection (or inside it: `cut_page`); `predicted`:
        (seconds the next page was predicted to need, seconds left) when it was not started for that reason."""
        self.next_pages = page_ranges(self.selected[index:])
        seconds = f"{budget.seconds:g} s"
        again = f"call again with pages=\"{self.next_pages}\" for the rest (a larger time_budget reads more a call)."
        if predicted is not None and cut_page is None:
            need, left = predicted
            self.note = (
                f"Page {self.selected[index]} was not started: it was predicted to need about {need:.0f} s, and "
                f"{left:.0f} s of the {seconds} time budget were left: {again}"
            )
            return
        where = f"in page {cut_page}" if cut_page is not None else f"before page {self.selected[index]}"
        self.note = f"Stopped at the {seconds} time budget {where}: {again}"


@dataclass(frozen=True)
class OcrPages:
    """The pages read, and (asked for) each returned page's picture for a viewer, by page number."""

    pages: list[PageText]
    page_count: int
    truncated: bool
    note: str | None
    next_pages: str | None = None
    pictures: dict[int, Any] = field(default_factory=dict)


async def read_document(
    media: Media, *, pages: str | None, mode: str, dpi: int, region: Region | None, settings: Settings,
    reader: PageReader, pictures: bool = False,
) -> OcrPages:
    """Open `media` (a PDF or another document PyMuPDF opens, a multi-page TIFF, or one page image), read the
    pages asked for and close it. `region` reads part of a single page image. `pictures`: also keep each
    returned page's picture (for a viewer's preview)."""
    from .inputs.images import ImagePages, is_multipage_candidate

    paged = media.kind in {"pdf", "unknown"} or is_multipage_candidate(media)
    if region is not None and paged:
        raise InputError(
            f"region reads part of a single page image, and {media.label} is a document of pages: omit region, "
            "or pass an image of the page."
        )
    if not paged:
        return await _done(await _read_page_image(media, pages, mode, region, settings, reader), reader)
    doc = await _open_pages(media, mode, settings)
    try:
        if isinstance(doc, ImagePages):  # its page count is known once it is open
            check_image_request(media, pages, mode, doc.page_count)
        read = await read_pages(doc, pages, mode, dpi, settings, reader)
        if pictures:
            read = replace(read, pictures=await _page_pictures(doc, read, reader, settings.max_image_pixels))
    finally:
        await doc.aclose()
    return await _done(read, reader)


async def _open_pages(media: Media, mode: str, settings: Settings) -> PdfPages | ImagePages:
    """A PDF (open_pdf says what an unknown file is, if not a PDF), or a multi-page TIFF: every frame is a page
    (scanner and fax output)."""
    from .inputs.images import ImagePages

    if media.kind in {"pdf", "unknown"}:
        from .inputs.pdf import open_pdf

        return await open_pdf(media, isolate=settings.isolate_decoding)
    check_image_request(media, None, mode)
    return await ImagePages(media, settings.max_image_pixels, settings.isolate_decoding).open()


async def _read_page_image(
    media: Media, pages: str | None, mode: str, region: Region | None, settings: Settings, reader: PageReader
) -> OcrPages:
    """One image of a page, or `region` of it; its picture is the whole page (the viewer outlines the region)."""
    from .inputs.images import crop, decode_isolated

    check_image_request(media, pages, mode)
    decoded = await decode_isolated(media, settings.max_image_pixels, isolate=settings.isolate_decoding)
    picture, _ = crop(decoded, region)
    return replace(await read_image(picture, settings, reader), pictures={1: decoded.image})


async def _done(read: OcrPages, reader: PageReader) -> OcrPages:
    """The last progress of a read document: every page returned is done."""
    await reader.report(len(read.pages), len(read.pages), "done")
    return read


async def _page_pictures(doc: PdfPages | ImagePages, read: OcrPages, reader: PageReader, max_pixels: int) -> dict:
    """Each returned page as a picture: as the model saw it, or (a text-layer page) rendered small."""
    from .previews import PAGE_DPI

    pictures = {}
    for page in read.pages:
        part = reader.page_images.get(page.page)
        pictures[page.page] = part.image if part is not None else await doc.render(page.page, PAGE_DPI, max_pixels)
    return pictures


async def read_pages(
    doc: PdfPages | ImagePages, pages: str | None, mode: str, dpi: int, settings: Settings, reader: PageReader,
) -> OcrPages:
    """The selected pages' text in order (of a PDF, or of a multi-page image, whose pages have no text
    layer): under `auto`, text-layer pages as Markdown from the layout step (LAYOUT_BATCH a round trip; flat text
    where it fails), under `text_layer` the text layers verbatim, the others through the model, up to
    MCP_VISION_OCR_BATCH of them in one batch, as many as the time budget allows; stops at the output cap or the
    budget with a note and the `pages` value for the rest."""
    from .inputs.pdf import parse_pages

    selected = parse_pages(pages, doc.page_count)
    if len(selected) > settings.max_pages:
        raise InputError(
            f"{len(selected)} pages were asked for; the limit is {settings.max_pages} a call "
            f"(MCP_VISION_MAX_PAGES): ask for a range such as pages=\"{selected[0]}-"
            f"{selected[settings.max_pages - 1]}\"."
        )
    output = _Output(settings.max_output_chars, selected)
    budget = reader.budget
    empty: list[int] = []  # pages whose text layer, asked for, holds no real text
    flat: dict[int, str] = {}  # pages whose layout failed (returned as flat text layers), with the reason
    total = len(selected)
    position = done = 0  # pages looked at; pages whose text is known (the progress shown)

    def finished(truncated: bool) -> OcrPages:
        notes = _notes(output.note, empty, flat)
        return OcrPages(output.pages, doc.page_count, truncated, notes, output.next_pages)

    while position < total:
        chunk: list[list[Any]] = []  # [index in selected, page number, method, text, header, footer]
        images: list = []
        layout: list[list[Any]] = []  # the chunk's entries for text-layer pages laid out as Markdown
        known = 0  # characters of the chunk's text-layer pages
        batch = settings.ocr_batch
        out_of_time = False
        while position < total and len(images) < batch and len(layout) < LAYOUT_BATCH and known < output.left:
            number = selected[position]
            await reader.report(done, total, f"page {number} ({position + 1}/{total})")
            if mode == "auto" and await doc.has_text_layer(number):
                first = not output.pages and not chunk  # the call's first page is read whatever the budget
                if not first and not LAYOUT_PACE.fits(budget, len(layout) + 1):
                    out_of_time = True
                    break
                known += len(await doc.text_layer(number))  # the Markdown is about as long
                entry = [position, number, "layout", None, None, None]
                layout.append(entry)
                chunk.append(entry)
            elif mode == "text_layer":
                text = await doc.text_layer(number)
                if not await doc.has_text_layer(number):
                    empty.append(number)
                known += len(text)
                done += 1
                chunk.append([position, number, "text_layer", text, None, None])
            else:
                if not images:  # the batch's first model page: how many fit the time left
                    await reader.prepare()
                    batch = reader.pages_that_fit(settings.ocr_batch, first=not output.pages and not chunk)
                    if batch == 0:
                        break
                images.append(await doc.render(number, dpi, settings.max_image_pixels))
                chunk.append([position, number, "vision", None, None, None])
            position += 1
        if layout:
            await _lay_out(doc, layout, flat, reader, done, total)
            done += len(layout)
        cut: int | None = None  # index in `chunk` of the first page the deadline cut
        if images:
            read = [entry for entry in chunk if entry[2] == "vision"]
            numbers = [entry[1] for entry in read]
            shown = ", ".join(map(str, numbers))
            first, last = read[0][0] + 1, read[-1][0] + 1  # their places among the pages asked for
            label = (f"page {shown} ({first}/{total})" if len(read) == 1
                     else f"pages {shown} together ({first}-{last}/{total})")
            answers = await reader.read(images, numbers, label, done, total)
            for entry, answer in zip(read, answers):
                entry[3] = answer.text
                if answer.finish_reason == "time" and cut is None:
                    cut = chunk.index(entry)
            done += len(read)
        for offset, (index, number, method, text, header, footer) in enumerate(chunk):
            if cut is not None and offset == cut:
                keep = not output.pages  # nothing read yet: the cut page's text beats nothing
                if keep:
                    output.take(index, number, method, text)
                output.stop_for_time(index, budget, cut_page=number)
                return finished(True)
            if not output.take(index, number, method, text, header, footer):
                return finished(True)
        if position < total and (batch == 0 or out_of_time):  # the next page does not fit the time left
            left = budget.remaining() or 0.0
            predicted = reader.predicted if batch == 0 else (LAYOUT_PACE.seconds_per_page, max(left, 0.0))
            output.stop_for_time(position, budget, predicted=predicted)
            return finished(True)
    return finished(False)


async def _lay_out(
    doc: PdfPages | ImagePages, entries: list[list[Any]], flat: dict[int, str], reader: PageReader, done: int,
    total: int,
) -> None:
    """Fill `entries` (text-layer pages) with their Markdown, header and footer; a page whose layout fails (the
    decoder's error, time or memory limit) keeps its flat text layer, its reason noted in `flat`."""
    numbers = [entry[1] for entry in entries]
    shown = page_ranges(numbers)
    await reader.report(done, total, f"laying out page{'s' if len(numbers) > 1 else ''} {shown} of {total}")
    pages: dict = {}
    reason = "it was left out of the layout step"
    started = time.monotonic()
    try:
        pages = await doc.markdown(numbers, timeout=LAYOUT_TIMEOUT_PER_PAGE * len(numbers))  # type: ignore[union-attr]
    except InputError as exc:  # DecoderFailure included: the layout step crashed, overran or ran out of memory
        reason = str(exc).split(":")[0]
    else:
        LAYOUT_PACE.learn(time.monotonic() - started, len(numbers))
    for entry in entries:
        page = pages.get(entry[1])
        if page is None:
            entry[2], entry[3] = "text_layer", await doc.text_layer(entry[1])
            flat[entry[1]] = reason
        else:
            entry[3], entry[4], entry[5] = page.body, page.header, page.footer


def _notes(cap: str | None, empty: list[int], flat: dict[int, str] | None = None) -> str | None:
    """The output cap's (or the budget's) note; when text layers were forced, which pages had none; which pages'
    layout failed, so they came back as flat text layers."""
    notes = [cap] if cap else []
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (", ..." if len(empty) > 20 else "")
        which = f"Page {shown} has" if len(empty) == 1 else f"Pages {shown} have"
        notes.append(f"{which} no real text layer (scanned): use mode='auto' or 'vision' to read them with the model.")
    if flat:
        numbers = sorted(flat)
        which = f"page {numbers[0]}" if len(numbers) == 1 else f"pages {page_ranges(numbers)}"
        notes.append(
            f"The layout of {which} could not be analysed ({flat[numbers[0]]}), so its flat text layer "
            "(method 'text_layer') is returned."
        )
    return " ".join(notes) or None


async def read_image(image: Any, settings: Settings, reader: PageReader) -> OcrPages:
    """A single page image, read by the model."""
    await reader.report(0, 1, "page 1 (1/1)")
    await reader.prepare()
    [answer] = await reader.read([image], [1], "page 1 (1/1)", 0, 1)
    output = _Output(settings.max_output_chars, [1])
    output.take(0, 1, "vision", answer.text)
    if answer.finish_reason == "time":
        output.stop_for_time(0, reader.budget, cut_page=1)
    return OcrPages(output.pages, 1, output.truncated, output.note, output.next_pages)


def check_image_request(media: Media, pages: str | None, mode: str, page_count: int = 1) -> None:
    """What an image (no text layer; one page unless a multi-page TIFF) cannot be asked for."""
    if mode == "text_layer":
        raise InputError(f"{media.label} is an image, which has no text layer: use mode='auto' or 'vision'.")
    if page_count == 1 and pages not in (None, "", "1"):
        raise InputError(f"{media.label} is a single image (1 page): omit pages or pass pages=\"1\".")


def session_turns(result: OcrPages, reader: PageReader, label: str, prompts: PromptLibrary) -> list[Turn]:
    """The exchange the pages add to the session: the pages the model saw (those returned), then their text."""
    numbers = ", ".join(str(page.page) for page in result.pages)
    shown = [reader.page_images[page.page] for page in result.pages if page.page in reader.page_images]
    return [
        Turn("user", [*shown, prompts.scaffold("ocr_session", pages=numbers, document=label)]),
        Turn.assistant("\n\n".join(f"## Page {page.page}\n\n{page.text}" for page in result.pages)),
    ]


__all__ = [
    "LAYOUT_BATCH", "LAYOUT_PACE", "LayoutPace",
    "PageReader", "OcrPages", "page_ranges", "check_request", "check_image_request", "read_document", "read_pages",
    "read_image", "session_turns",
]
