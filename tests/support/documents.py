"""Documents the tests build: PDFs with text layers and scanned pages, multi-page TIFFs, and striped page images."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Invoice number 4711 is due on the first of March.",
    "Page three holds the closing remarks of this report.",
]


def page_image(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    """A page-sized image of one colour with a fine grid of its inverse, so pages differ beyond their colour."""
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 37):  # some structure, so pages differ beyond their colour
        for y in range(0, size[1], 3):
            image.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    return image


def scanned_pdf(sizes: list[tuple[int, int] | None]) -> bytes:
    """A page per entry: an image of that size filling the page (a scan), or None for a page of text."""
    import pymupdf

    doc = pymupdf.open()
    colors = [(200, 30, 30), (30, 160, 40), (20, 40, 220), (200, 200, 40), (90, 20, 120), (10, 150, 150)]
    for index, size in enumerate(sizes):
        page = doc.new_page(width=595, height=842)
        if size is None:
            page.insert_text((72, 72), f"Typed page {index + 1} has a real text layer.", fontsize=12)
        else:
            buf = io.BytesIO()
            page_image(size, colors[index % len(colors)]).save(buf, "PNG")
            page.insert_image(page.rect, stream=buf.getvalue(), keep_proportion=False)
    return doc.tobytes()


def sentences_pdf(path: Path, *, scanned_page: bool = False, encrypt: bool = False) -> Path:
    """A page per sentence of SENTENCES (real text layers), then optionally a scanned page; optionally encrypted."""
    import pymupdf

    doc = pymupdf.open()
    for sentence in SENTENCES:
        page = doc.new_page()
        page.insert_text((72, 100), sentence, fontsize=12)
    if scanned_page:
        page = doc.new_page()
        scan = Image.new("RGB", (800, 300), "white")
        ImageDraw.Draw(scan).text((20, 120), "SCANNED TEXT ONLY AS PIXELS", fill="black")
        buf = io.BytesIO()
        scan.save(buf, format="PNG")
        page.insert_image(page.rect, stream=buf.getvalue())
    kwargs = {}
    if encrypt:
        kwargs = {"encryption": pymupdf.PDF_ENCRYPT_AES_256, "user_pw": "secret", "owner_pw": "owner"}
    doc.save(path, **kwargs)
    return path


def text_layer(path: Path, page: int) -> str:
    import pymupdf

    with pymupdf.open(path) as doc:
        return doc[page - 1].get_text("text")


def multipage_tiff(path: Path, pages: int) -> Path:
    frames = [Image.new("RGB", (300 + 40 * i, 420), (255, 255 - 60 * i, 255)) for i in range(pages)]
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:])
    return path


__all__ = ["SENTENCES", "page_image", "scanned_pdf", "sentences_pdf", "text_layer", "multipage_tiff"]
