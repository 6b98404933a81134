"""A born-digital page's text layer as structured Markdown: PyMuPDF Layout (a layout model that pymupdf4llm runs
with onnxruntime) finds headings, paragraphs in reading order, lists, tables, footnotes and the running header and
footer; pymupdf4llm writes the body as Markdown and this module keeps the header and footer apart.

Runs where the PDF is parsed (in a decoder process when isolated): it parses untrusted bytes in native code and a
model, so it gets the decoder's memory and time limits like every other parse. Nothing here is imported at package
import: importing pymupdf4llm (PyMuPDF 2 imports it with pymupdf itself) loads onnxruntime.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any

# The layout model's classes of running page furniture: kept out of the body, returned apart.
HEADER_CLASS = "page-header"
FOOTER_CLASS = "page-footer"


@dataclass(frozen=True)
class PageMarkdown:
    """One page: its body as Markdown, and its running header and footer (page numbers included) as plain text."""

    body: str
    header: str
    footer: str


def layout_markdown(doc: Any, page_numbers: list[int]) -> dict[int, PageMarkdown]:
    """The Markdown of the 1-based `page_numbers` of the open PyMuPDF document `doc`, parsed together (so heading
    levels agree across them). `doc` is changed: pymupdf4llm removes page rotation and the structure tree, so pass
    a copy that nothing else renders from."""
    from pymupdf4llm.helpers.document_layout import parse_document, text_to_text

    # pymupdf4llm print()s some warnings to stdout, which is the MCP channel when this runs in the server process.
    with contextlib.redirect_stdout(sys.stderr):
        # use_ocr=False: pages without a text layer go to the vision model, never to an OCR engine here.
        # render_html_tables: a table whose cells span rows or columns comes out as HTML (Markdown cannot span).
        parsed = parse_document(
            doc, pages=[n - 1 for n in page_numbers], use_ocr=False, force_text=True, render_html_tables=True
        )
        chunks = parsed.to_markdown(header=False, footer=False, page_chunks=True)
    pages: dict[int, PageMarkdown] = {}
    for layout, chunk in zip(parsed.pages, chunks):
        furniture = {HEADER_CLASS: [], FOOTER_CLASS: []}
        for box in layout.boxes:
            if box.boxclass in furniture and box.textlines:
                furniture[box.boxclass].append(text_to_text(box.textlines, ignore_code=True).strip())
        body = tidy(chunk["text"])
        header = "\n".join(t for t in furniture[HEADER_CLASS] if t)
        footer = "\n".join(t for t in furniture[FOOTER_CLASS] if t)
        if not body.strip():
            # A page of a line or two near its edge reads as "all header" to the layout model; with no body there
            # is nothing to keep the furniture apart from, and an empty text would hide what the page says.
            body, header, footer = "\n\n".join(t for t in (header, footer) if t), "", ""
        pages[layout.page_number] = PageMarkdown(body=body, header=header, footer=footer)
    return pages


def tidy(markdown: str) -> str:
    """pymupdf4llm's Markdown without trailing spaces on lines or runs of blank lines (they only cost characters)."""
    lines = [line.rstrip() for line in markdown.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip()


__all__ = ["PageMarkdown", "layout_markdown", "tidy", "HEADER_CLASS", "FOOTER_CLASS"]
