"""ocr_document's pages, from the opened file to the text: which pages, read how (the text layer or the model),
in what batches, rendered at what resolution, where the output cap or the time budget stops the reading, what
progress says of each page, and the picture of each page a viewer previews. MCP-free; the model is reached
through the inference worker, and loaded through a hook the service hands in (only it knows the load)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
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
    from .inputs.page_markdown import PageMarkdown
    from .results import PageFigure, PageRegion, Region
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

# Characters of a page's partial text layer handed to the model as a hint (about a page of prose).
ANCHOR_CHARS = 4000


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
        region_prompt: str = "", anchored: Callable[[str], str] | None = None,
        figure_prompt: Callable[[str], str] | None = None,
    ) -> None:
        """`caller`: whose turn in the worker's queue each batch takes; `watch` wraps each batch (the service
        notes engine failures); `events` hears the tokens written."""
        self._worker, self._backend, self._prompt, self._prepare = worker, backend, prompt, prepare
        self._caller, self._watch, self._events = caller, watch, events or Events()
        # The prompt for a region cut from a page, the words that hand a page's partial text layer to the model as
        # a hint, and the prompt for a figure given its caption (prompts/scaffolding.md: ocr_region, ocr_anchor,
        # ocr_figure).
        self.region_prompt = region_prompt or prompt
        self._anchored = anchored
        self._figure_prompt = figure_prompt
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

    def prompt_for(self, anchor: str | None) -> str:
        """The page prompt, with the page's partial text layer as a hint when it has one."""
        if not anchor or self._anchored is None:
            return self._prompt
        return f"{self._prompt}\n\n{self._anchored(anchor[:ANCHOR_CHARS])}"

    def figure_prompt(self, caption: str) -> str:
        """The prompt that asks for a description of a figure (its caption given, when it has one)."""
        if self._figure_prompt is None:
            return "Describe this figure from a document page for a reader who cannot see it."
        return self._figure_prompt(caption)

    async def read(
        self, images: list, numbers: list[int], label: str, index: float, total: int, *,
        prompts: list[str] | None = None, keep: bool = True,
    ) -> list[ChatResult]:
        """The answer for each image, in order (`prompts`: each its own prompt, else the page prompt); progress runs
        from `index` to `index + len(images)` of `total`. `keep`: the images are pages (kept for the session and
        the viewer, as the model saw them), not regions cut from pages already counted done (progress stays at
        `index` while they are read; the messages say what is read)."""
        width = len(images) if keep else 0

        async def inner(p: float, t: float | None, message: str | None) -> None:
            fraction = min(p / t, 1.0) if t else 0.0
            await self.report(index + fraction * width, total, f"{label}: {message}" if message else label)

        parts = [ImagePart(image, self._max_tiles) for image in images]
        if keep:
            self.page_images.update(zip(numbers, parts))
        asked = prompts or [self._prompt] * len(parts)
        conversations = [[Turn("user", [part, prompt])] for part, prompt in zip(parts, asked)]
        backend, tokens = self._backend, self._max_new_tokens
        started = time.monotonic()
        work = self._worker.run(
            lambda job: backend.chat_batch(conversations, job, max_new_tokens=tokens),
            progress=inner, label="starting", deadline=self.budget.work_deadline, caller=self._caller,
        )
        answers = await (self._watch(work) if self._watch is not None else work)
        answers = [replace(answer, text=page_text(answer.text)) for answer in answers]
        self._events.generated(sum(answer.output_tokens or 0 for answer in answers))
        self.seconds_per_page = (time.monotonic() - started) / max(1, len(images))
        if self._speeds is not None and answers:
            self._speeds.learn(answers[0])  # the batch's stages are shared by its rows
        return answers


def page_text(text: str) -> str:
    """A page (or region) as the model wrote it, made to follow the layout path's conventions: no code fence
    around the whole page, and a runaway repetition at its end cut off."""
    from .page_text import cut_repetition, unfence

    return cut_repetition(unfence(text))


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
        self, index: int, number: int, method: str, text: str, header: str | None = None, footer: str | None = None,
        regions: list[PageRegion] | None = None, figures: list[PageFigure] | None = None,
    ) -> bool:
        """Keep the page at `index` of the selection, cut to what is left; False once the cap is reached."""
        cut = len(text) > self.left
        text = text[: self.left]
        self.left -= len(text)
        self.pages.append(PageText(page=number, method=method, text=text, header=header or None, footer=footer or None,
                                   regions=regions or None, figures=figures or None))
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
    reader: PageReader, pictures: bool = False, figures: bool = False,
) -> OcrPages:
    """Open `media` (a PDF or another document PyMuPDF opens, a multi-page TIFF, or one page image), read the
    pages asked for and close it. `region` reads part of a single page image. `pictures`: also keep each
    returned page's picture (for a viewer's preview). `figures`: the model describes each figure of a born-digital
    page in place."""
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
        read = await read_pages(doc, pages, mode, dpi, settings, reader, figures)
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


@dataclass
class _Entry:
    """A page of the current chunk on its way to the output."""

    index: int  # its place among the pages asked for
    number: int
    method: str  # layout | text_layer | vision
    text: str | None = None
    header: str | None = None
    footer: str | None = None
    image: Any = None  # vision pages: the render the model reads
    anchor: str | None = None  # vision pages with a partial text layer: that text, handed to the model as a hint
    laid_out: PageMarkdown | None = None  # layout pages: the layout step's page, with the regions it lacks
    region_texts: list[str] = field(default_factory=list)  # what the model read of those regions, in order
    figure_texts: list[str] = field(default_factory=list)  # its descriptions of the page's figures, in order


@dataclass
class _Cut:
    """Where the time budget stops a chunk: at `entry`, inside it (`inside`: the deadline cut its reading) or
    before it (not started: it was predicted not to fit)."""

    entry: _Entry
    inside: bool


async def read_pages(
    doc: PdfPages | ImagePages, pages: str | None, mode: str, dpi: int, settings: Settings, reader: PageReader,
    figures: bool = False,
) -> OcrPages:
    """The selected pages' text in order (of a PDF, or of a multi-page image, whose pages have no text
    layer): under `auto`, text-layer pages as Markdown from the layout step (LAYOUT_BATCH a round trip; flat text
    where it fails), the regions such a page shows but its text layer lacks read by the model and merged in, and a
    page whose text layer covers only part of what it shows read whole by the model (its text layer as a hint);
    under `text_layer` the text layers verbatim; the others through the model, up to MCP_VISION_OCR_BATCH of them
    in one batch, as many as the time budget allows; stops at the output cap or the budget with a note and the
    `pages` value for the rest. `figures`: the model also describes each figure of a layout page, in place."""
    from .inputs.pdf import is_real_text, parse_pages

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
    partial: list[int] = []  # text-layer pages read whole by the model: their text layer covers only part of them
    unrendered: dict[int, str] = {}  # pages whose uncovered regions could not be rendered for the model, and why
    total = len(selected)
    position = done = 0  # pages looked at; pages whose text is known (the progress shown)

    def finished(truncated: bool) -> OcrPages:
        notes = _notes(output.note, empty, flat, partial, unrendered)
        return OcrPages(output.pages, doc.page_count, truncated, notes, output.next_pages)

    while position < total:
        chunk: list[_Entry] = []
        layout: list[_Entry] = []  # the chunk's text-layer pages laid out as Markdown
        images = 0  # the chunk's pages for the model
        known = 0  # characters of the chunk's text-layer pages
        batch = settings.ocr_batch
        out_of_time = False
        while position < total and images < batch and len(layout) < LAYOUT_BATCH and known < output.left:
            number = selected[position]
            await reader.report(done, total, f"page {number} ({position + 1}/{total})")
            method, anchor = "vision", None
            if mode == "auto" and await doc.has_text_layer(number):
                # One round trip for the next few text-layer pages (a scanned page has nothing to compare).
                window = [n for n in selected[position: position + LAYOUT_BATCH] if await doc.has_text_layer(n)]
                coverage = (await doc.coverage(window))[number]  # type: ignore[union-attr]
                if coverage.whole_page:  # a scan with a partial text layer: the model reads it, the layer a hint
                    anchor = await doc.text_layer(number)
                else:
                    method = "layout"
            elif mode == "text_layer":
                method = "text_layer"
            elif mode == "auto" and is_real_text(await doc.text_layer(number), 1):
                anchor = await doc.text_layer(number)  # a few characters (a scan's page number, a stamp): a hint
            if method == "layout":
                first = not output.pages and not chunk  # the call's first page is read whatever the budget
                if not first and not LAYOUT_PACE.fits(budget, len(layout) + 1):
                    out_of_time = True
                    break
                known += len(await doc.text_layer(number))  # the Markdown is about as long
                entry = _Entry(position, number, "layout")
                layout.append(entry)
            elif method == "text_layer":
                text = await doc.text_layer(number)
                if not await doc.has_text_layer(number):
                    empty.append(number)
                known += len(text)
                done += 1
                entry = _Entry(position, number, "text_layer", text)
            else:
                if not images:  # the batch's first model page: how many fit the time left
                    await reader.prepare()
                    batch = reader.pages_that_fit(settings.ocr_batch, first=not output.pages and not chunk)
                    if batch == 0:
                        break
                entry = _Entry(position, number, "vision", image=await doc.render(number, dpi, settings.max_image_pixels),
                               anchor=anchor)
                if anchor is not None and await doc.has_text_layer(number):  # noted: read whole despite its layer
                    partial.append(number)
                images += 1
            chunk.append(entry)
            position += 1
        cut: _Cut | None = None
        if layout:
            await _lay_out(doc, layout, flat, reader, done, total)
            done += len(layout)
            must = chunk[0] if not output.pages else None  # the call's first page is read whatever the budget
            cut = await _read_regions(doc, layout, dpi, settings, reader, unrendered, must, done, total, figures)
        stop = chunk.index(cut.entry) if cut is not None else len(chunk)
        read = [entry for entry in chunk[:stop] if entry.method == "vision"]
        if read:
            numbers = [entry.number for entry in read]
            shown = ", ".join(map(str, numbers))
            first, last = read[0].index + 1, read[-1].index + 1  # their places among the pages asked for
            label = (f"page {shown} ({first}/{total})" if len(read) == 1
                     else f"pages {shown} together ({first}-{last}/{total})")
            answers = await reader.read([entry.image for entry in read], numbers, label, done, total,
                                        prompts=[reader.prompt_for(entry.anchor) for entry in read])
            for entry, answer in zip(read, answers):
                entry.text = answer.text
                if answer.finish_reason == "time" and cut is None:
                    cut = _Cut(entry, inside=True)
            done += len(read)
        for entry in chunk:
            if cut is not None and entry is cut.entry:
                if cut.inside:
                    if not output.pages:  # nothing read yet: the cut page's text beats nothing
                        _take(output, entry)
                    output.stop_for_time(entry.index, budget, cut_page=entry.number)
                else:
                    output.stop_for_time(entry.index, budget, predicted=reader.predicted)
                return finished(True)
            if not _take(output, entry):
                return finished(True)
        if position < total and (batch == 0 or out_of_time):  # the next page does not fit the time left
            left = budget.remaining() or 0.0
            predicted = reader.predicted if batch == 0 else (LAYOUT_PACE.seconds_per_page, max(left, 0.0))
            output.stop_for_time(position, budget, predicted=predicted)
            return finished(True)
    return finished(False)


def _take(output: _Output, entry: _Entry) -> bool:
    """Keep `entry`'s page (a layout page with the regions read and the figures described so far merged into its
    text)."""
    from .inputs.page_markdown import merge_regions
    from .results import PageFigure, PageRegion

    text, regions, figures = entry.text or "", None, None
    page = entry.laid_out
    if page is not None and entry.method == "layout" and (entry.region_texts or entry.figure_texts):
        read, described = entry.region_texts, entry.figure_texts
        shown = [figure_block(said) for said in described]
        text = merge_regions(page.body, [*page.slots[: len(read)], *(f.slot for f in page.figures[: len(shown)])],
                             [*read, *shown])
        regions = [PageRegion(bbox=list(region.bbox), source=region.source, text=said)  # type: ignore[arg-type]
                   for region, said in zip(page.regions, read)]
        figures = [PageFigure(bbox=list(figure.bbox), caption=figure.caption or None, description=said)
                   for figure, said in zip(page.figures, described)]
    return output.take(entry.index, entry.number, entry.method, text, entry.header, entry.footer, regions, figures)


def figure_block(description: str) -> str:
    """A figure's description as it stands in the page's Markdown: a quotation marked as the model's words."""
    lines = description.strip().splitlines() or [""]
    lines[0] = f"*Figure, described by the model:* {lines[0]}".rstrip()
    return "\n".join(f"> {line}" if line.strip() else ">" for line in lines)


async def _read_regions(
    doc: PdfPages | ImagePages, entries: list[_Entry], dpi: int, settings: Settings, reader: PageReader,
    unrendered: dict[int, str], must: _Entry | None, done: int, total: int, figures: bool = False,
) -> _Cut | None:
    """Read with the model the regions that the layout pages among `entries` show but their text layers lack (and,
    with `figures`, describe their figures), cropped from the page rendered at `dpi`, MCP_VISION_OCR_BATCH a batch,
    as the time budget allows (`must`: the call's first page, whose first batch is read whatever the budget).
    Returns where the budget stopped them (a page whose regions or figures were not all read), or None."""
    crops: list[tuple[_Entry, Any, str, list[str]]] = []  # (page, crop, prompt, where its answer goes)
    for entry in entries:
        page = entry.laid_out
        shown = page.figures if figures and page is not None else ()
        if entry.method != "layout" or page is None or not (page.regions or shown):
            continue
        try:
            picture = await doc.render(entry.number, dpi, settings.max_image_pixels)
        except InputError as exc:
            unrendered[entry.number] = str(exc).split(":")[0]
            continue
        for region in page.regions:
            crops.append((entry, crop_points(picture, region.bbox, dpi), reader.region_prompt, entry.region_texts))
        for figure in shown:
            crops.append((entry, crop_points(picture, figure.bbox, dpi), reader.figure_prompt(figure.caption),
                          entry.figure_texts))
    position = 0
    while position < len(crops):
        await reader.prepare()
        first = position == 0 and crops[0][0] is must
        n = reader.pages_that_fit(min(settings.ocr_batch, len(crops) - position), first=first)
        if n == 0:
            return _Cut(crops[position][0], inside=False)
        batch = crops[position: position + n]
        numbers = sorted({entry.number for entry, *_ in batch})
        label = f"regions of page{'s' if len(numbers) > 1 else ''} {page_ranges(numbers)} for the model"
        answers = await reader.read([image for _, image, *_ in batch], [entry.number for entry, *_ in batch], label,
                                    done, total, prompts=[prompt for _, _, prompt, _ in batch], keep=False)
        for (entry, _, _, into), answer in zip(batch, answers):
            into.append(answer.text)
            if answer.finish_reason == "time":
                return _Cut(entry, inside=True)
        position += n
    return None


def crop_points(picture: Any, bbox: tuple[float, float, float, float], dpi: float) -> Any:
    """The part of a page `picture` rendered at `dpi` that `bbox` (page points) covers."""
    zoom = dpi / 72.0
    x0, y0, x1, y1 = (round(v * zoom) for v in bbox)
    width, height = picture.size
    box = (max(0, x0), max(0, y0), min(width, max(x1, x0 + 1)), min(height, max(y1, y0 + 1)))
    return picture.crop(box)


async def _lay_out(
    doc: PdfPages | ImagePages, entries: list[_Entry], flat: dict[int, str], reader: PageReader, done: int,
    total: int,
) -> None:
    """Fill `entries` (text-layer pages) with their Markdown, header, footer and uncovered regions; a page whose
    layout fails (the decoder's error, time or memory limit) keeps its flat text layer, its reason noted in `flat`."""
    numbers = [entry.number for entry in entries]
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
        page = pages.get(entry.number)
        if page is None:
            entry.method, entry.text = "text_layer", await doc.text_layer(entry.number)
            flat[entry.number] = reason
        else:
            entry.text, entry.header, entry.footer, entry.laid_out = page.body, page.header, page.footer, page


def _notes(
    cap: str | None, empty: list[int], flat: dict[int, str] | None = None, partial: list[int] | None = None,
    unrendered: dict[int, str] | None = None,
) -> str | None:
    """The output cap's (or the budget's) note; when text layers were forced, which pages had none; which pages'
    layout failed, so they came back as flat text layers; which text-layer pages the model read whole, and which
    pages' uncovered regions could not be rendered for it."""
    notes = [cap] if cap else []
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (", ..." if len(empty) > 20 else "")
        which = f"Page {shown} has" if len(empty) == 1 else f"Pages {shown} have"
        notes.append(f"{which} no real text layer (scanned): use mode='auto' or 'vision' to read them with the model.")
    if flat:
        notes.append(
            f"The layout of {_which(flat)} could not be analysed ({flat[min(flat)]}), so its flat text layer "
            "(method 'text_layer') is returned."
        )
    if partial:
        notes.append(
            f"The text layer of {_which(partial)} covers only part of what the page shows (a scan with a partial text "
            "layer), so the model read the page whole with that text layer as a hint (method 'vision'); "
            "mode='text_layer' returns the text layer alone."
        )
    if unrendered:
        notes.append(
            f"The parts of {_which(unrendered)} that the text layer lacks were not read ({unrendered[min(unrendered)]}): "
            "call again with a lower dpi to read them."
        )
    return " ".join(notes) or None


def _which(numbers: Iterable[int]) -> str:
    """The pages named in a note: "page 3", or "pages 2-4,7"."""
    ordered = sorted(numbers)
    return f"page {ordered[0]}" if len(ordered) == 1 else f"pages {page_ranges(ordered)}"


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
