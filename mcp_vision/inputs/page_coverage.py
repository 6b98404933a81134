"""What a page shows that its text layer lacks: text drawn as vector outlines, a picture of text inside a digital
page, the lines of a scan that its invisible OCR layer missed. The page is rendered in grey at one pixel a point,
the text layer's word boxes (invisible text included) and the page's rules and rectangles are blanked out, and the
ink that is left is grouped into regions; a region is kept when it looks like lines of glyphs (many thin strokes
on a light ground), not a photograph, a chart's filled shapes or a speck.

Runs where the PDF is parsed (in a decoder process when isolated), on the page objects of an open document.
Connected regions are found here by hand on a coarse mask (a few hundred runs a page): scipy is not a dependency,
and the only thing asked of it would be this labelling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DPI = 72  # one pixel a point: enough to see glyph strokes of body text, cheap (about 15 ms a page)
MAX_PIXELS = 4_000_000  # a larger page is looked at with fewer pixels a point (A4 at 72 dpi: 0.5 million)
INK_LEVEL = 160  # grey below this is ink
WORD_PAD = 2  # points around a word's box that its glyphs may reach (accents, descenders, bold strokes)
GAP_X, GAP_Y = 6, 3  # points between glyphs of a line, and between lines, that still join them into one region
MIN_HEIGHT = 5  # points: a region lower than this is a rule or a speck, not a line of text
MIN_INK = 40  # pixels of ink
MIN_STROKES = 12  # ink runs along the region's rows, all together: a few letters at least
STROKE_DENSITY = 0.06  # ink runs per point of width, on rows with ink: text has many thin strokes
STROKES_PER_EM = 1.2  # or ink runs per line height of width (large type; a photograph's or a logo's shapes: < 1)
MAX_INK_SHARE = 0.55  # ink over the region's area: more than this is a dark picture, not text on a ground
PAD = 4  # points around a region when it is cropped for the model
MAX_REGIONS = 8  # more uncovered regions than this: the page is better read whole
WHOLE_PAGE_SHARE = 0.35  # uncovered regions over this share of the page's area: read the page whole


@dataclass(frozen=True)
class Uncovered:
    """A region of a page that shows text its text layer lacks. `bbox`: (x0, y0, x1, y1) in points of the page as
    displayed (its rotation applied), origin top-left; `layout_bbox`: the same in the unrotated page's points (the
    layout step's). `source`: what draws it: "vector" (paths, such as glyphs outlined), "image" (a picture) or
    "ink" (neither: an annotation, a form, a font without Unicode)."""

    bbox: tuple[float, float, float, float]
    layout_bbox: tuple[float, float, float, float]
    source: str


@dataclass(frozen=True)
class Coverage:
    """A page's uncovered regions, in reading order (top to bottom, then left to right); `whole_page`: so much is
    uncovered (a scan with a partial text layer) that the model should read the page whole."""

    regions: tuple[Uncovered, ...] = ()
    whole_page: bool = False


def page_coverage(page: Any) -> Coverage:
    """The regions of the PyMuPDF `page` that show ink outside its text layer's words and its rules."""
    import numpy as np
    import pymupdf

    # One pixel a point, or fewer on a page so large that its render would not fit MAX_PIXELS (a poster, a map).
    zoom = min(DPI / 72, math.sqrt(MAX_PIXELS / max(1.0, abs(page.rect.width * page.rect.height))))
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False)
    grey = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.stride)[:, : pix.width]
    ink = grey < INK_LEVEL
    if int(ink.sum()) < MIN_INK:
        return Coverage()
    # Text, drawings and images come in unrotated points; the render is rotated and scaled by `zoom`.
    rotate = page.rotation_matrix * pymupdf.Matrix(zoom, zoom)
    height, width = ink.shape

    def blank(rect: Any, pad: float) -> None:
        r = pymupdf.Rect(rect) * rotate
        x0, y0 = max(0, int(r.x0 - pad)), max(0, int(r.y0 - pad))
        x1, y1 = min(width, int(r.x1 + pad + 1)), min(height, int(r.y1 + pad + 1))
        if x1 > x0 and y1 > y0:
            ink[y0:y1, x0:x1] = False

    for word in page.get_text("words"):
        blank(word[:4], WORD_PAD)
    shapes: list[Any] = []  # drawings that may be glyphs or pictures drawn with paths
    for drawing in page.get_drawings():
        kinds = {item[0] for item in drawing["items"]}
        stroked_lines = kinds <= {"l"} and (drawing.get("type") == "s" or len(drawing["items"]) <= 2)
        if kinds <= {"re", "qu"} or stroked_lines:  # rules, boxes, cell shading, underlines: never text
            blank(drawing["rect"], (drawing.get("width") or 1.0) + 1)
        else:
            shapes.append(pymupdf.Rect(drawing["rect"]) * rotate)
    images = [pymupdf.Rect(info["bbox"]) * rotate for info in page.get_image_info()]
    if int(ink.sum()) < MIN_INK:
        return Coverage()
    boxes = [box for box in _regions(ink) if _looks_like_text(ink, box)]
    if len(boxes) > 4 * MAX_REGIONS:  # line upon line the text layer lacks: no need to group them to know
        return Coverage((), True)
    regions: list[Uncovered] = []
    unzoom = pymupdf.Matrix(1 / zoom, 1 / zoom)
    for x0, y0, x1, y1 in _merge(boxes):
        rect = pymupdf.Rect(x0 - PAD, y0 - PAD, x1 + PAD, y1 + PAD) & pymupdf.Rect(0, 0, width, height)
        source = ("image" if any(rect.intersects(i) for i in images)
                  else "vector" if any(rect.intersects(s) for s in shapes) else "ink")
        shown = rect * unzoom
        regions.append(Uncovered(_rounded(shown), _rounded(shown * page.derotation_matrix), source))
    regions.sort(key=lambda r: (r.bbox[1], r.bbox[0]))
    area = sum((r.bbox[2] - r.bbox[0]) * (r.bbox[3] - r.bbox[1]) for r in regions) * zoom * zoom
    whole = len(regions) > MAX_REGIONS or area > WHOLE_PAGE_SHARE * width * height
    return Coverage(tuple(regions), whole)


def _rounded(rect: Any) -> tuple[float, float, float, float]:
    return (round(rect.x0, 1), round(rect.y0, 1), round(rect.x1, 1), round(rect.y1, 1))


def _regions(ink: Any) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1, end exclusive) of the ink, glyphs GAP_X apart joined along a line and lines
    GAP_Y apart joined: connected runs of the widened mask, labelled row by row with a union-find."""
    import numpy as np

    grown = _widen(_widen(ink, GAP_X, axis=1), GAP_Y, axis=0)
    parent: list[int] = []
    boxes: list[list[int]] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[tuple[int, int, int]] = []  # (start, end, label) of the last row's runs
    for y in range(grown.shape[0]):
        row = grown[y]
        if not row.any():
            previous = []
            continue
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.view(np.int8), [0]))))
        current = []
        j = 0
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist()):
            label = -1
            while j < len(previous) and previous[j][1] <= start:
                j += 1
            k = j
            while k < len(previous) and previous[k][0] < end:
                other = find(previous[k][2])
                if label < 0:
                    label = other
                elif other != label:
                    parent[other] = label
                    a, b = boxes[label], boxes[other]
                    boxes[label] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                k += 1
            if label < 0:
                label = len(parent)
                parent.append(label)
                boxes.append([start, y, end, y + 1])
            else:
                box = boxes[label]
                boxes[label] = [min(box[0], start), box[1], max(box[2], end), y + 1]
            current.append((start, end, label))
        previous = current
    roots = {find(i) for i in range(len(parent))}
    found = []
    for i in roots:
        x0, y0, x1, y1 = boxes[i]
        # Undo the widening: the ink itself lies GAP inside the grown box.
        found.append((x0 + GAP_X, y0 + GAP_Y, max(x0 + GAP_X + 1, x1 - GAP_X), max(y0 + GAP_Y + 1, y1 - GAP_Y)))
    return found


def _widen(mask: Any, reach: int, axis: int) -> Any:
    """`mask` dilated by `reach` pixels both ways along `axis` (a sliding window of ones, by cumulative sums)."""
    import numpy as np

    pad = [(0, 0), (0, 0)]
    pad[axis] = (reach + 1, reach)  # one more zero in front: the window sums are differences of running sums
    counts = np.cumsum(np.pad(mask, pad), axis=axis, dtype=np.int32)
    size = mask.shape[axis]
    ahead = counts.take(range(2 * reach + 1, 2 * reach + 1 + size), axis=axis)
    behind = counts.take(range(size), axis=axis)
    return (ahead - behind) > 0


def _looks_like_text(ink: Any, box: tuple[int, int, int, int]) -> bool:
    """Whether the ink in `box` reads as lines of glyphs: tall enough, enough of it, on a light ground, and broken
    into many thin strokes along its rows (a photograph, a pie chart's sector or a logo's blob is not)."""
    import numpy as np

    x0, y0, x1, y1 = box
    if y1 - y0 < MIN_HEIGHT or x1 - x0 < MIN_HEIGHT:
        return False
    part = ink[y0:y1, x0:x1]
    total = int(part.sum())
    if total < MIN_INK or total > MAX_INK_SHARE * part.size:
        return False
    starts = np.count_nonzero(part[:, 1:] & ~part[:, :-1], axis=1) + part[:, 0]
    inked = starts > 0
    rows = int(np.count_nonzero(inked))
    strokes = int(starts.sum())
    if strokes < MIN_STROKES:
        return False
    if strokes / (rows * (x1 - x0)) >= STROKE_DENSITY:
        return True
    # Large type has fewer strokes a point: count them a line height (an em, about) instead.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inked.view(np.int8), [0]))))
    line = float(np.mean(edges[1::2] - edges[::2]))
    return strokes * line / (rows * (x1 - x0)) >= STROKES_PER_EM


def _merge(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes that overlap once each is widened by a line's height (the lines of one block) merged into one."""
    merged = [list(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                reach = max(a[3] - a[1], b[3] - b[1])
                if a[0] - reach < b[2] and b[0] - reach < a[2] and a[1] - reach < b[3] and b[1] - reach < a[3]:
                    merged[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return [tuple(b) for b in merged]  # type: ignore[misc]


__all__ = ["Coverage", "Uncovered", "page_coverage", "DPI"]
