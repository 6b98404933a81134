"""PDF documents: open checked bytes with PyMuPDF, read a page's text layer, render a page to RGB.

MuPDF never writes to stdout (the MCP channel): PyMuPDF's messages go to stderr and MuPDF's errors
and warnings are collected on the document instead of printed. PyMuPDF is not thread-safe and keeps
its warnings in one process-wide list, so every call into it runs under one lock.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DecoderFailure, InputError, summary
from ..limits import MAX_PAGE_SPEC_CHARS, MAX_RENDER_DPI
from .sources import Media

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .page_coverage import Coverage
    from .page_markdown import PageMarkdown

MIN_TEXT_CHARS = 20  # fewer real characters than this and a page counts as image-only
DEFAULT_PAGES_OPEN = 8  # loaded pages kept per document (an LRU), so text then render loads once
MAX_WARNINGS = 50

_T = TypeVar("_T")

_MUPDF_LOCK = threading.RLock()
_configured = False
_PART = re.compile(r"([0-9]+)(?:\s*(-)\s*([0-9]*))?")


def _pymupdf() -> Any:
    """Import PyMuPDF with its messages sent to stderr and MuPDF's errors and warnings collected, not printed."""
    global _configured
    preset = "PYMUPDF_MESSAGE" in os.environ
    imported_before = "pymupdf" in sys.modules
    os.environ.setdefault("PYMUPDF_MESSAGE", "fd:2")
    os.environ.setdefault("PYMUPDF_SUGGEST_LAYOUT_ANALYZER", "0")  # that hint is print()ed to stdout
    import pymupdf

    if not _configured:
        with _MUPDF_LOCK:
            if imported_before and not preset:
                pymupdf.set_messages(fd=2)  # imported elsewhere before the variable was set
            pymupdf.TOOLS.mupdf_display_errors(False)
            pymupdf.TOOLS.mupdf_display_warnings(False)
            _configured = True
    return pymupdf


def _take_warnings(pymupdf: Any) -> list[str]:
    """MuPDF's collected warnings and errors since the last call, emptying the process-wide store."""
    text = pymupdf.TOOLS.mupdf_warnings(reset=True)
    return [line.strip() for line in text.splitlines() if line.strip()]


def _reason(exc: BaseException, warnings: list[str]) -> str:
    """A short cause: MuPDF's first complaint, else the exception's first line."""
    errors = [w for w in warnings if "error" in w.lower()]
    if errors:
        text = errors[0]
    else:
        text = summary(exc, 120)
    return text[:120]


def _out_of_range(page: int | str, page_count: int) -> InputError:
    pages = "page" if page_count == 1 else "pages"
    return InputError(
        f"Page {page} is out of range: the document has {page_count} {pages} "
        f"(use pages between 1 and {page_count})."
    )


def parse_pages(spec: str | None, page_count: int) -> list[int]:
    """1-based page numbers from a spec like "3", "1-3,7" or "5-"; None or "" means every page."""
    if spec is None or not spec.strip():
        return list(range(1, page_count + 1))
    pages = "page" if page_count == 1 else "pages"
    malformed = InputError(
        f"pages={spec[:80]!r} is not a page list: use numbers and ranges such as '3', '1-3,7' or '5-' "
        f"(the document has {page_count} {pages})."
    )
    if len(spec) > MAX_PAGE_SPEC_CHARS:
        raise malformed
    chosen: set[int] = set()
    for part in spec.split(","):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise malformed
        first_text, dash, last_text = match.groups()
        first = int(first_text)
        last = int(last_text) if last_text else (page_count if dash else first)
        for number, text in ((first, first_text), (last, last_text or first_text)):
            if not 1 <= number <= page_count:
                raise _out_of_range(text.lstrip("0") or "0", page_count)
        if last < first:
            raise InputError(
                f"The page range '{first}-{last}' runs backwards: write it as '{last}-{first}' "
                f"(the document has {page_count} {pages})."
            )
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def is_real_text(text: str, min_chars: int = MIN_TEXT_CHARS) -> bool:
    """True when `text` has at least `min_chars` characters that are neither space nor unmapped glyphs."""
    real = sum(1 for ch in text if not ch.isspace() and ch != "\ufffd")
    return real >= min_chars


def _not_pdf(media: Media) -> InputError:
    if media.kind == "image":
        what = "an image"
    elif media.kind == "video":
        what = "a video"
    elif media.data.startswith(b"PK\x03\x04"):
        what = "a ZIP archive (such as EPUB, XPS or an Office file)"
    else:
        what = "a file of another type"
    return InputError(
        f"{media.label} is {what}, not a PDF or another document PyMuPDF reads: pass a PDF (bytes beginning with "
        "%PDF-), EPUB, XPS, FB2, CBZ, MOBI or SVG file."
    )


_OFFICE = {"word/document.xml": "Word (DOCX)", "ppt/presentation.xml": "PowerPoint (PPTX)",
           "xl/workbook.xml": "Excel (XLSX)"}
_PICTURES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jxr")
MAX_ZIP_NAMES = 10_000  # entries looked at to tell an EPUB, XPS, CBZ or Office file apart


def _office(label: str, kind: str) -> InputError:
    return InputError(
        f"{label} is a {kind} file, which this server cannot lay out into pages: convert it to PDF first, for "
        "example with LibreOffice: `soffice --headless --convert-to pdf FILE`, and pass the PDF."
    )


def document_type(media: Media) -> str:
    """PyMuPDF's filetype for `media` ("pdf", "epub", "xps", "cbz", "mobi", "fb2" or "svg"), told from its bytes
    (never its name); an Office file or anything else is refused with the InputError that says what to do."""
    import io
    import zipfile

    data = media.data
    if media.kind == "pdf":
        return "pdf"
    if media.kind != "unknown":
        raise _not_pdf(media)
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):  # OLE2: Word, Excel and PowerPoint before 2007
        raise _office(media.label, "Microsoft Office (DOC, XLS or PPT)")
    if data[60:68] == b"BOOKMOBI":
        return "mobi"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [info.filename for _, info in zip(range(MAX_ZIP_NAMES), archive.infolist())]
        except (zipfile.BadZipFile, ValueError, OSError):
            raise _not_pdf(media) from None
        for name, kind in _OFFICE.items():
            if name in names:
                raise _office(media.label, kind)
        if "META-INF/container.xml" in names:
            return "epub"
        if any(name.lower().endswith((".fdseq", ".fdoc", ".fpage")) for name in names):
            return "xps"
        files = [name for name in names if not name.endswith("/")]
        if files and all(name.lower().endswith(_PICTURES) for name in files):
            return "cbz"
        raise _not_pdf(media)
    head = data[:2048].decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    if head.startswith("<") and "<FictionBook" in head:
        return "fb2"
    if head.startswith("<") and "<svg" in head:
        return "svg"
    raise _not_pdf(media)


class PdfDocument:
    """An open PDF: page count, text layers and renders, with MuPDF's warnings and repair flag."""

    def __init__(
        self, doc: Any, label: str, warnings: list[str], max_pages_open: int, data: bytes | None = None,
        filetype: str = "pdf",
    ) -> None:
        self._doc = doc
        self._filetype = filetype
        self._data = data  # the file's bytes: the layout step parses its own copy (it changes the pages it reads)
        self._layout_doc: Any = None
        self.label = label
        self.warnings: list[str] = []
        self.repaired = False
        self._max_pages_open = max(1, max_pages_open)
        self._pages: OrderedDict[int, Any] = OrderedDict()
        self._texts: dict[int, str] = {}
        self._coverage: dict[int, Coverage] = {}
        self._page_count = int(doc.page_count)
        self._note(warnings)

    def __enter__(self) -> PdfDocument:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def page_count(self) -> int:
        return self._page_count

    def close(self) -> None:
        """Release the document and its loaded pages; safe to call twice."""
        with _MUPDF_LOCK:
            self._pages.clear()
            if not self._doc.is_closed:
                self._doc.close()
            if self._layout_doc is not None and not self._layout_doc.is_closed:
                self._layout_doc.close()

    def _note(self, warnings: list[str]) -> None:
        for warning in warnings:
            if warning not in self.warnings and len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(warning)
        self.repaired = self.repaired or bool(self._doc.is_repaired)  # MuPDF may repair lazily

    def _check_number(self, page_number: int) -> None:
        if not isinstance(page_number, int) or not 1 <= page_number <= self._page_count:
            raise _out_of_range(page_number, self._page_count)

    def _run(self, page_number: int, action: str, work: Callable[[Any], _T]) -> _T:
        """Call `work(page)` on a loaded page under the lock, turning MuPDF failures into an InputError."""
        self._check_number(page_number)
        pymupdf = _pymupdf()
        with _MUPDF_LOCK:
            if self._doc.is_closed:
                raise InputError(f"{self.label} was already closed: open it again.")
            _take_warnings(pymupdf)  # drop anything left by other code
            try:
                page = self._pages.get(page_number)
                if page is None:
                    page = self._doc.load_page(page_number - 1)
                    self._pages[page_number] = page
                    while len(self._pages) > self._max_pages_open:
                        self._pages.popitem(last=False)
                self._pages.move_to_end(page_number)
                return work(page)
            except Exception as exc:
                warnings = _take_warnings(pymupdf)
                self._note(warnings)
                raise InputError(
                    f"Page {page_number} of {self.label} cannot be {action} ({_reason(exc, warnings)}): "
                    "the file is damaged there, so try other pages or re-save it from the program that made it."
                ) from None
            finally:
                self._note(_take_warnings(pymupdf))

    def text_layer(self, page_number: int) -> str:
        """The page's text exactly as `page.get_text("text")` gives it (no reordering)."""
        if page_number not in self._texts:
            self._texts[page_number] = self._run(page_number, "read", lambda page: page.get_text("text"))
        return self._texts[page_number]

    def has_text_layer(self, page_number: int, min_chars: int = MIN_TEXT_CHARS) -> bool:
        """True when the text layer holds real text, False for an image-only (scanned) page."""
        return is_real_text(self.text_layer(page_number), min_chars)

    def coverage(self, page_number: int) -> Coverage:
        """What the page shows that its text layer lacks (page_coverage.py): regions for the model to read."""
        from .page_coverage import page_coverage

        if page_number not in self._coverage:
            self._coverage[page_number] = self._run(page_number, "read", page_coverage)
        return self._coverage[page_number]

    def markdown(self, page_numbers: list[int]) -> dict[int, PageMarkdown]:
        """The pages' text layers as structured Markdown (page_markdown.py), parsed together, each with the place
        in reading order of the regions its text layer lacks (`coverage`); when that fails, page by page, leaving
        out a page whose layout cannot be analysed (`markdown([n])` alone gives its error)."""
        from .page_markdown import layout_markdown

        for number in page_numbers:
            self._check_number(number)
        regions = {number: self.coverage(number).regions for number in page_numbers}
        if self._data is None:
            raise InputError(f"The layout of {self.label} cannot be analysed: it was opened without its bytes.")
        pymupdf = _pymupdf()
        with _MUPDF_LOCK:
            if self._doc.is_closed:
                raise InputError(f"{self.label} was already closed: open it again.")
            _take_warnings(pymupdf)
            try:
                if self._layout_doc is None:  # its own copy: parsing removes rotation and the structure tree
                    self._layout_doc = pymupdf.open(stream=self._data, filetype=self._filetype)
                try:
                    return self._shown(layout_markdown(self._layout_doc, page_numbers, regions))
                except Exception as exc:
                    if len(page_numbers) == 1:
                        warnings = _take_warnings(pymupdf)
                        self._note(warnings)
                        raise InputError(
                            f"The layout of page {page_numbers[0]} of {self.label} cannot be analysed "
                            f"({_reason(exc, warnings)}): read it with mode='text_layer' for its flat text."
                        ) from None
                pages: dict[int, PageMarkdown] = {}
                for number in page_numbers:
                    try:
                        pages.update(self._shown(layout_markdown(self._layout_doc, [number], regions)))
                    except Exception:
                        continue
                return pages
            finally:
                self._note(_take_warnings(pymupdf))

    def _shown(self, pages: dict[int, PageMarkdown]) -> dict[int, PageMarkdown]:
        """`pages` with each figure's box in points of the page as displayed (the layout step's are unrotated)."""
        from dataclasses import replace

        pymupdf = _pymupdf()
        for number, page in pages.items():
            if page.figures:
                turn = self._doc.load_page(number - 1).rotation_matrix
                figures = tuple(
                    replace(f, bbox=tuple(round(v, 1) for v in pymupdf.Rect(f.layout_bbox) * turn)) for f in page.figures
                )
                pages[number] = replace(page, figures=figures)
        return pages

    def check_render(self, page_number: int, dpi: float, max_pixels: int) -> tuple[int, int]:
        """The (width, height) a render at `dpi` gives; refused, before rendering, when over `max_pixels`."""
        if not (isinstance(dpi, int | float) and 0 < dpi <= MAX_RENDER_DPI):
            raise InputError(f"dpi={dpi!r} is out of range: use a resolution above 0 and at most {MAX_RENDER_DPI:,}.")
        rect = self._run(page_number, "read", lambda page: page.rect)
        width, height = _pixel_size(rect, dpi)
        if width < 1 or height < 1:
            raise InputError(
                f"Page {page_number} of {self.label} has no area ({rect.width:g}x{rect.height:g} pt): pick another page."
            )
        if width * height > max_pixels:
            fit = _dpi_that_fits(rect, dpi, max_pixels)
            change = f"use dpi={fit} or lower" if fit else "this page is too large to render at any resolution"
            raise InputError(
                f"Page {page_number} of {self.label} would render at {width:,}x{height:,} pixels at {dpi:g} dpi, "
                f"over the {max_pixels:,} pixel limit: {change}."
            )
        return width, height

    def render(self, page_number: int, dpi: float, max_pixels: int) -> PILImage.Image:
        """The page rendered to an 8-bit RGB Pillow image at `dpi`, after `check_render`."""
        from PIL import Image

        self.check_render(page_number, dpi, max_pixels)
        pymupdf = _pymupdf()

        def draw(page: Any) -> Any:
            if float(dpi).is_integer():
                return page.get_pixmap(dpi=int(dpi), alpha=False, colorspace=pymupdf.csRGB)
            zoom = dpi / 72.0  # PyMuPDF records a whole dpi on the pixmap, so a fractional one goes as a matrix
            return page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False, colorspace=pymupdf.csRGB)

        pix = self._run(page_number, "rendered", draw)
        if pix.n != 3 or pix.alpha:
            raise InputError(f"Page {page_number} of {self.label} rendered with {pix.n} channels instead of RGB.")
        size = (pix.width, pix.height)
        return Image.frombuffer("RGB", size, pix.samples, "raw", "RGB", pix.stride, 1)


def _pixel_size(rect: Any, dpi: float) -> tuple[int, int]:
    """The pixmap size MuPDF gives `rect` at `dpi` (its rounding: outward, with a 0.001 tolerance)."""
    zoom = dpi / 72.0
    width = math.ceil(rect.x1 * zoom - 0.001) - math.floor(rect.x0 * zoom + 0.001)
    height = math.ceil(rect.y1 * zoom - 0.001) - math.floor(rect.y0 * zoom + 0.001)
    return width, height


def _dpi_that_fits(rect: Any, dpi: float, max_pixels: int) -> int:
    """The largest whole dpi whose render stays within `max_pixels`, 0 when not even 1 dpi does."""
    width, height = _pixel_size(rect, dpi)
    guess = int(dpi * math.sqrt(max_pixels / (width * height))) + 1
    for candidate in range(min(guess, int(dpi)), 0, -1):
        w, h = _pixel_size(rect, candidate)
        if w * h <= max_pixels:
            return candidate
    return 0


def open_document(media: Media, max_pages_open: int = DEFAULT_PAGES_OPEN) -> PdfDocument:
    """Open `media` as a PDF (or an EPUB, XPS, FB2, CBZ, MOBI or SVG document, laid out into pages by PyMuPDF), or
    raise an InputError that names it and says what is wrong."""
    filetype = document_type(media)
    pymupdf = _pymupdf()
    with _MUPDF_LOCK:
        _take_warnings(pymupdf)  # drop anything left by other code
        try:
            doc = pymupdf.open(stream=media.data, filetype=filetype)
        except Exception as exc:
            raise InputError(
                f"{media.label} is not a readable {filetype.upper()} ({_reason(exc, _take_warnings(pymupdf))}): "
                "check that the file is complete, or re-save it from the program that made it."
            ) from None
        warnings = _take_warnings(pymupdf)
        try:
            if doc.needs_pass:
                raise InputError(
                    f"{media.label} is password-protected: remove the password (for example with "
                    "`qpdf --decrypt --password=... in.pdf out.pdf`) and pass the unlocked file."
                )
            if doc.page_count < 1:
                raise InputError(f"{media.label} has no pages: pass a PDF that has at least one page.")
            return PdfDocument(doc, media.label, warnings, max_pages_open, data=media.data, filetype=filetype)
        except BaseException:
            doc.close()
            raise


@dataclass(frozen=True)
class PdfSummary:
    """What opening a PDF in a decoder process tells the server."""

    page_count: int


# One call each, opening the document from its bytes and closing it again (in a decoder process, see
# sandbox.py, no MuPDF state outlives the call).


def summarize_pdf(media: Media) -> PdfSummary:
    """Open `media` as a PDF and say what it holds, or raise the InputError `open_document` raises."""
    with open_document(media, max_pages_open=1) as doc:
        return PdfSummary(doc.page_count)


def read_page_text(media: Media, page_number: int) -> str:
    """The text layer of one page of `media`, exactly as `PdfDocument.text_layer` gives it."""
    with open_document(media, max_pages_open=1) as doc:
        return doc.text_layer(page_number)


def read_page_texts(media: Media, page_numbers: list[int]) -> dict[int, str]:
    """The text layers of several pages from one opening; a page that cannot be read is left out (reading
    it alone with `read_page_text` gives its error)."""
    with open_document(media, max_pages_open=1) as doc:
        return _readable_texts(doc, page_numbers)


def _readable_texts(doc: PdfDocument, page_numbers: list[int]) -> dict[int, str]:
    return _readable(page_numbers, doc.text_layer)


def _readable(page_numbers: list[int], read: Callable[[int], _T]) -> dict[int, _T]:
    """`read(n)` of each page that it does not refuse (an InputError leaves the page out)."""
    found: dict[int, _T] = {}
    for number in page_numbers:
        try:
            found[number] = read(number)
        except InputError:
            continue
    return found


def render_page(media: Media, page_number: int, dpi: float, max_pixels: int) -> PILImage.Image:
    """One page of `media` rendered at `dpi`, refused before rendering when over `max_pixels`."""
    with open_document(media, max_pages_open=1) as doc:
        return doc.render(page_number, dpi, max_pixels)



# Run in the decoder process of a lease: the document is opened there once per tool call, held, and
# read page by page, so its bytes cross the pipe once (again only after a page crashed that process).
_HELD = "pdf"


def open_held(media: Media) -> PdfSummary:
    """Open `media` as a PDF and keep it open in this decoder process; say what it holds."""
    from .sandbox import hold

    doc = open_document(media)
    hold(_HELD, doc)
    return PdfSummary(doc.page_count)


def held_texts(page_numbers: list[int]) -> dict[int, str]:
    """The held document's text layers of several pages; a page that cannot be read is left out."""
    from .sandbox import held

    return _readable_texts(held(_HELD), page_numbers)


def held_markdown(page_numbers: list[int]) -> dict[int, PageMarkdown]:
    """The held document's pages as Markdown (`PdfDocument.markdown`)."""
    from .sandbox import held

    return held(_HELD).markdown(page_numbers)


def held_coverages(page_numbers: list[int]) -> dict[int, Coverage]:
    """The held document's coverage of several pages (`PdfDocument.coverage`); a page that fails is left out."""
    from .sandbox import held

    return _readable(page_numbers, held(_HELD).coverage)


def held_text(page_number: int) -> str:
    from .sandbox import held

    return held(_HELD).text_layer(page_number)


def held_render(page_number: int, dpi: float, max_pixels: int) -> PILImage.Image:
    from .sandbox import held

    return held(_HELD).render(page_number, dpi, max_pixels)


TEXT_BATCH = 16  # text layers read per round trip to the decoder process (the pages from the one asked for on)


class PdfPages:
    """A PDF read page by page for one tool call. Isolated, the document stays open in one leased decoder
    process (text layers `TEXT_BATCH` pages a round trip); otherwise one open `PdfDocument` is read in
    threads. Each page's text layer is read once."""

    def __init__(self, media: Media, page_count: int, *, doc: PdfDocument | None = None, lease: Any = None) -> None:
        self.media = media
        self.page_count = page_count
        self._doc = doc  # an open PdfDocument when not isolated
        self._lease = lease  # a DecoderLease holding the document when isolated (reopened there after a crash)
        self._texts: dict[int, str] = {}
        self._coverage: dict[int, Coverage] = {}

    async def _held(self, fn: Callable[..., _T], *args: Any, **limits: Any) -> _T:
        """`fn(*args)` in the decoder process that holds the document (`limits`: its timeout, memory_mb)."""
        return await self._lease.run(fn, *args, what=self.media.label, **limits)

    async def text_layer(self, page_number: int) -> str:
        from .sandbox import run_isolated

        if page_number in self._texts:
            return self._texts[page_number]
        if self._doc is not None:
            text = await run_isolated(self._doc.text_layer, page_number, what=self.media.label, isolate=False)
        else:
            if isinstance(page_number, int) and 1 <= page_number <= self.page_count:
                window = range(page_number, min(page_number + TEXT_BATCH, self.page_count + 1))
                wanted = [n for n in window if n not in self._texts]
                try:
                    self._texts.update(await self._held(held_texts, wanted))
                except DecoderFailure:
                    pass  # a later page may have crashed the decoder: read this one alone below
            if page_number in self._texts:
                return self._texts[page_number]
            text = await self._held(held_text, page_number)
        self._texts[page_number] = text
        return text

    async def has_text_layer(self, page_number: int) -> bool:
        return is_real_text(await self.text_layer(page_number))

    async def coverage(self, page_numbers: list[int]) -> dict[int, Coverage]:
        """What each page shows that its text layer lacks, in one round trip; a page that cannot be rendered is
        left out (it stays a text-layer page: the layout step reports its trouble)."""
        from .page_coverage import Coverage
        from .sandbox import run_isolated

        wanted = [n for n in page_numbers if n not in self._coverage]
        if wanted and self._doc is not None:
            found = await run_isolated(_readable, wanted, self._doc.coverage, what=self.media.label, isolate=False)
            self._coverage.update(found)
        elif wanted:
            try:
                self._coverage.update(await self._held(held_coverages, wanted))
            except DecoderFailure:
                pass  # one page crashed the decoder: those pages stay as their text layers say
        return {n: self._coverage.get(n, Coverage()) for n in page_numbers}

    async def markdown(self, page_numbers: list[int], timeout: float) -> dict[int, PageMarkdown]:
        """The pages' text layers as structured Markdown, within `timeout` seconds and the decoder's memory limit;
        a page whose layout could not be analysed is left out."""
        from .sandbox import run_isolated

        if self._doc is not None:
            return await run_isolated(self._doc.markdown, page_numbers, what=self.media.label, isolate=False)
        return await self._held(held_markdown, page_numbers, timeout=timeout)

    async def render(self, page_number: int, dpi: float, max_pixels: int) -> PILImage.Image:
        from .sandbox import run_isolated

        if self._doc is not None:
            return await run_isolated(
                self._doc.render, page_number, dpi, max_pixels, what=self.media.label, isolate=False
            )
        return await self._held(held_render, page_number, dpi, max_pixels)

    def close(self) -> None:
        """Close the document (and hand its decoder process back); blocks briefly when isolated."""
        if self._doc is not None:
            self._doc.close()
        if self._lease is not None:
            self._lease.close()

    async def aclose(self) -> None:
        import anyio

        await anyio.to_thread.run_sync(self.close)


async def open_pdf(media: Media, *, isolate: bool = True) -> PdfPages:
    """Open `media` as a PDF (held in a leased decoder process with `isolate`), or raise the InputError
    that says why not."""
    from .sandbox import decoder_pool, run_isolated

    if isolate:
        lease = decoder_pool().lease()
        summary = await lease.open(open_held, media, what=media.label)
        return PdfPages(media, summary.page_count, lease=lease)
    doc = await run_isolated(open_document, media, what=media.label, isolate=False)
    return PdfPages(media, doc.page_count, doc=doc)

__all__ = [
    "PdfDocument",
    "PdfPages",
    "open_pdf",
    "TEXT_BATCH",
    "PdfSummary",
    "open_document",
    "document_type",
    "parse_pages",
    "is_real_text",
    "summarize_pdf",
    "read_page_text",
    "read_page_texts",
    "render_page",
    "MIN_TEXT_CHARS",
    "DEFAULT_PAGES_OPEN",
]
