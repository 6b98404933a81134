"""A born-digital page's text layer as structured Markdown: PyMuPDF Layout (a layout model that pymupdf4llm runs
with onnxruntime) finds headings, paragraphs in reading order, lists, tables, footnotes and the running header and
footer; pymupdf4llm writes the body as Markdown (tables as HTML, spans kept: a table the page's rules outline takes
their grid, ruled_tables.py) and this module keeps the header and footer apart.

Runs where the PDF is parsed (in a decoder process when isolated): it parses untrusted bytes in native code and a
model, so it gets the decoder's memory and time limits like every other parse. Nothing here is imported at package
import: importing pymupdf4llm (PyMuPDF 2 imports it with pymupdf itself) loads onnxruntime.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .ruled_tables import rule_tables, share_inside

if TYPE_CHECKING:
    from .page_coverage import Uncovered

# The layout model's classes of running page furniture: kept out of the body, returned apart.
HEADER_CLASS = "page-header"
FOOTER_CLASS = "page-footer"


@dataclass(frozen=True)
class PageMarkdown:
    """One page: its body as Markdown, and its running header and footer (page numbers included) as plain text;
    the regions its text layer lacks (page_coverage.py), each with `slots`' offset in `body` where its text goes in
    reading order."""

    body: str
    header: str
    footer: str
    regions: tuple[Uncovered, ...] = ()
    slots: tuple[int, ...] = ()
    figures: tuple[Figure, ...] = ()  # the page's figures (not pictures of text: those are regions), in order


@dataclass(frozen=True)
class Figure:
    """A figure the layout model found (a picture box: a photograph, a chart, a diagram), where its description
    goes in the page's body (`slot`), and its caption when the layout model found one beside it. `bbox`: points
    of the page as displayed; `layout_bbox`: of the unrotated page."""

    bbox: tuple[float, float, float, float]
    layout_bbox: tuple[float, float, float, float]
    caption: str
    slot: int = 0


def layout_markdown(
    doc: Any, page_numbers: list[int], regions: Mapping[int, Sequence[Uncovered]] | None = None
) -> dict[int, PageMarkdown]:
    """The Markdown of the 1-based `page_numbers` of the open PyMuPDF document `doc`, parsed together (so heading
    levels agree across them), with the place in reading order of each page's `regions` (text the text layer
    lacks). `doc` is changed: pymupdf4llm removes page rotation and the structure tree, so pass a copy that
    nothing else renders from."""
    from pymupdf4llm.helpers.document_layout import parse_document, text_to_text

    # pymupdf4llm print()s some warnings to stdout, which is the MCP channel when this runs in the server process.
    with contextlib.redirect_stdout(sys.stderr):
        # use_ocr=False: pages without a text layer go to the vision model, never to an OCR engine here.
        # render_html_tables: a table whose cells span rows or columns comes out as HTML (Markdown cannot span).
        parsed = parse_document(
            doc, pages=[n - 1 for n in page_numbers], use_ocr=False, force_text=True, render_html_tables=True
        )
        for layout in parsed.pages:  # a table the page's rules outline takes their grid: its spans are drawn there
            body = [box for box in layout.boxes if box.boxclass not in (HEADER_CLASS, FOOTER_CLASS)]
            rule_tables(doc[layout.page_number - 1], body)
        chunks = parsed.to_markdown(header=False, footer=False, page_chunks=True)
    pages: dict[int, PageMarkdown] = {}
    for layout, chunk in zip(parsed.pages, chunks):
        furniture = {HEADER_CLASS: [], FOOTER_CLASS: []}
        for box in layout.boxes:
            if box.boxclass in furniture and box.textlines:
                furniture[box.boxclass].append(text_to_text(box.textlines, ignore_code=True).strip())
        uncovered = tuple((regions or {}).get(layout.page_number, ()))
        places = [_place(region.layout_bbox, chunk["page_boxes"], len(chunk["text"])) for region in uncovered]
        found = _figures(chunk["text"], chunk["page_boxes"], uncovered)
        body, slots = _split_tidy(chunk["text"], places + [place for _, place in found])
        figures = tuple(replace(figure, slot=slot) for (figure, _), slot in zip(found, slots[len(uncovered):]))
        slots = slots[: len(uncovered)]
        header = "\n".join(t for t in furniture[HEADER_CLASS] if t)
        footer = "\n".join(t for t in furniture[FOOTER_CLASS] if t)
        if not body.strip():
            # A page of a line or two near its edge reads as "all header" to the layout model; with no body there
            # is nothing to keep the furniture apart from, and an empty text would hide what the page says.
            body, header, footer = "\n\n".join(t for t in (header, footer) if t), "", ""
            slots = [len(body)] * len(uncovered)
            figures = tuple(replace(figure, slot=len(body)) for figure in figures)
        pages[layout.page_number] = PageMarkdown(body, header, footer, uncovered, tuple(slots), figures)
    return pages


def _figures(markdown: str, boxes: list[dict], uncovered: Sequence[Uncovered]) -> list[tuple[Figure, int]]:
    """The page's picture boxes that are figures, each with its caption (a caption box next to it in reading
    order) and the offset after it in `markdown`; a picture that is mostly an uncovered region (a picture of text)
    is left to that region."""
    found = []
    for i, box in enumerate(boxes):
        if box["class"] != "picture":
            continue
        x0, y0, x1, y1 = (float(v) for v in box["bbox"])
        if any(share_inside((x0, y0, x1, y1), region.layout_bbox) > 0.5 for region in uncovered):
            continue
        captions = [b for b in boxes[max(0, i - 1): i + 2] if b["class"] == "caption"]
        start, end = captions[-1]["pos"] if captions else (0, 0)
        caption = " ".join(markdown[start:end].split())
        found.append((Figure((x0, y0, x1, y1), (x0, y0, x1, y1), caption), box["pos"][1]))
    return found


def _place(bbox: tuple[float, float, float, float], boxes: list[dict], end: int) -> int:
    """Where in the page's Markdown a region's text goes, from the layout boxes in reading order (each with its
    `bbox` and its `pos` span in the Markdown): after a box the region overlaps (a picture box holding it), else
    after the nearest box above it in its column, else before the first box below it, else at the end."""
    x0, y0, x1, y1 = bbox
    body = [b for b in boxes if b["class"] not in (HEADER_CLASS, FOOTER_CLASS)]

    def overlap(a: float, b: float, c: float, d: float) -> float:
        return max(0.0, min(b, d) - max(a, c))

    for box in body:
        bx0, by0, bx1, by1 = box["bbox"]
        area = max(1e-6, (x1 - x0) * (y1 - y0))
        if overlap(x0, x1, bx0, bx1) * overlap(y0, y1, by0, by1) > 0.3 * area:
            return box["pos"][1]
    column = [b for b in body if overlap(x0, x1, b["bbox"][0], b["bbox"][2]) > 0]
    above = [b for b in column if b["bbox"][1] < y0]
    if above:
        return max(above, key=lambda b: (b["bbox"][3], b["pos"][1]))["pos"][1]
    below = [b for b in column if b["bbox"][1] >= y0]
    if below:
        return min(b["pos"][0] for b in below)
    return end


def _split_tidy(markdown: str, places: list[int]) -> tuple[str, list[int]]:
    """`markdown` tidied, and where each of `places` (offsets in it) lands in the tidied text: the pieces between
    places are tidied apart and joined by blank lines."""
    cuts = sorted(set(places))
    pieces = [markdown[a:b] for a, b in zip([0, *cuts], [*cuts, len(markdown)])]
    body, landed = "", {}
    for cut, piece in zip([0, *cuts], pieces):
        landed[cut] = len(body)
        text = tidy(piece)
        if text:
            body = f"{body}\n\n{text}" if body else text
    return body, [landed[p] for p in places]


def merge_regions(body: str, slots: Sequence[int], texts: Sequence[str]) -> str:
    """`body` with each of `texts` put in at its slot as a paragraph of its own (regions in one place keep their
    order); an empty text leaves the body as it is."""
    for _, slot, text in sorted(zip(range(len(texts)), slots, texts), key=lambda p: (p[1], p[0]), reverse=True):
        text = text.strip()
        if text:
            before, after = body[:slot].rstrip("\n"), body[slot:].lstrip("\n")
            body = "\n\n".join(part for part in (before, text, after) if part)
    return body


def tidy(markdown: str) -> str:
    """pymupdf4llm's Markdown without trailing spaces on lines or runs of blank lines (they only cost characters)."""
    lines = [line.rstrip() for line in markdown.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip()


__all__ = ["Figure", "PageMarkdown", "layout_markdown", "merge_regions", "tidy", "HEADER_CLASS", "FOOTER_CLASS"]
