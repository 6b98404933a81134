"""Tables whose cells the page's drawn rules outline, rebuilt from those rules: where a ruled table's cell spans
columns or rows, the rules say so, while the layout model's grid (found from the text alone) cannot tell a heading
centred over two columns from a column of its own, nor a label centred beside two rows from one in the first.

PyMuPDF's line-based table finder (`find_tables(strategy="lines_strict", refine=True)`: the drawn rules, merged-
cell placements and header rows reconstructed, `Table.to_html()` escaping the cells' text) reads such a table's
spans. pymupdf4llm's own fusion of the two (`find_tables(union=True)`) takes the rules' grid only where the layout
box and the ruled frame match closely (intersection over union 0.9), which a layout box drawn tight around the text
inside a padded frame misses; this module matches them by containment instead, with guards that keep the layout
model's grid wherever the rules do not clearly describe the same table.

Runs where the PDF is parsed (page_markdown.py, inside the decoder's isolation), on pages where the layout model
found a table; nothing here is imported at package import (pymupdf4llm loads onnxruntime).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Box = tuple[float, float, float, float]

# The share of a layout table box that must lie inside a ruled frame for the frame to be that table's.
INSIDE = 0.9
# The share of any other body box inside the frame above which the frame holds more than the table: left alone.
FOREIGN = 0.5


def rule_tables(page: Any, body: Sequence[Any]) -> None:
    """Give each table box among `body` (the layout boxes of `page`, an unrotated PyMuPDF page, that pymupdf4llm
    parsed as its body: its running header and footer left out) that drawn rules outline the HTML of the ruled
    table, spans included, in place of the layout model's grid. A box keeps the layout model's HTML when no ruled
    table holds it, when one frame holds several layout tables or one layout table several frames, when the frame
    also holds other body text, or when the rules under-divide it (words side by side on one line that the layout
    model set in different columns would share one ruled cell)."""
    tables = [box for box in body if box.boxclass == "table" and _single_html(box.table)]
    if not tables:
        return
    finder = page.find_tables(strategy="lines_strict", use_layout=False, refine=True)  # None: it failed
    ruled = [t for t in (finder.tables if finder is not None else []) if t.placements is not None]
    if not ruled:
        return
    frames = [tuple(t.bbox) for t in ruled]
    holders = {id(box): [i for i, frame in enumerate(frames) if share_inside(_box(box), frame) >= INSIDE]
               for box in tables}
    words = None
    for box in tables:
        if len(holders[id(box)]) != 1:
            continue
        index = holders[id(box)][0]
        if sum(index in found for found in holders.values()) != 1:
            continue
        frame, table = frames[index], ruled[index]
        if any(other is not box and share_inside(_box(other), frame) > FOREIGN for other in body):
            continue
        if words is None:
            words = page.get_text("words")
        if _under_divided(words, frame, table.cells, box.table["cells"]):
            continue
        box.table = _as_layout_table(table, box.table["bbox"])


def _as_layout_table(table: Any, bbox: list[float]) -> dict:
    """A ruled PyMuPDF table as pymupdf4llm describes a table box (its HTML, and the grid that HTML shows, for its
    text and JSON output too), keeping the layout box's `bbox`."""
    # pymupdf4llm's own expansion of a placement grid into the rows x columns matrices it keeps for a table box.
    from pymupdf4llm.helpers.table_html.reconstruct import _placement_grid_matrices

    rows, cols, cells, extract = _placement_grid_matrices(table.placements)
    html = table.to_html()
    item = {"bbox": [float(v) for v in table.bbox], "html": html, "rows": rows, "cols": cols, "cells": cells,
            "extract": extract}
    return {"bbox": bbox, "row_count": rows, "col_count": cols, "cells": cells, "extract": extract,
            "markdown": None, "html_tables": [item], "html": html}


def _single_html(table: dict | None) -> bool:
    """Whether a layout table box is one HTML table with its cell grid (what a ruled table can stand in for)."""
    return bool(table and table.get("html") and table.get("cells") and len(table.get("html_tables") or ()) == 1)


def _box(box: Any) -> Box:
    return (float(box.x0), float(box.y0), float(box.x1), float(box.y1))


def share_inside(inner: Sequence[float], outer: Sequence[float]) -> float:
    """The share of `inner`'s area inside `outer` (boxes x0, y0, x1, y1; 0 for an empty `inner`)."""
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    if area <= 0:
        return 0.0
    width = min(inner[2], outer[2]) - max(inner[0], outer[0])
    height = min(inner[3], outer[3]) - max(inner[1], outer[1])
    return max(0.0, width) * max(0.0, height) / area


def _holder(point: tuple[float, float], boxes: Sequence[Sequence[float] | None]) -> int | None:
    """The index of the first of `boxes` holding `point`, or None."""
    x, y = point
    for i, b in enumerate(boxes):
        if b is not None and b[0] <= x <= b[2] and b[1] <= y <= b[3]:
            return i
    return None


def _under_divided(
    words: Sequence[Sequence[Any]], frame: Box, ruled_cells: Sequence[Sequence[float] | None],
    layout_cells: Sequence[Sequence[Sequence[float] | None]],
) -> bool:
    """Whether the rules merge what the layout model divided: two words of one text line (PyMuPDF's block and
    line numbers) in one ruled cell but in different columns of the layout model's grid. Rules missing between
    columns (a frame and a rule under the header, no verticals) read a row as one cell: the text's own columns
    are then the better guess."""
    columns = [(b, c) for row in layout_cells for c, b in enumerate(row) if b is not None]
    layout_boxes = [b for b, _ in columns]
    seen: dict[tuple[int, int, int], int] = {}
    for x0, y0, x1, y1, _text, block, line, *_ in words:
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        if _holder(centre, [frame]) is None:
            continue
        cell, place = _holder(centre, ruled_cells), _holder(centre, layout_boxes)
        if cell is None or place is None:
            continue
        column = columns[place][1]
        if seen.setdefault((block, line, cell), column) != column:
            return True
    return False


__all__ = ["rule_tables", "share_inside"]
