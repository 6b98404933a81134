"""Ruled tables whose cells span columns or rows keep their spans on the text path (ruled_tables.py): each table is
drawn here with known cells, laid out as the server lays a page out (no model), and read back as a grid whose
neighbours up, down, left and right must be the drawn ones."""

from __future__ import annotations

import pytest

from bench.documents import normalise, table_neighbour, tables
from mcp_vision.inputs.pdf import open_document
from mcp_vision.inputs.ruled_tables import _under_divided
from mcp_vision.inputs.sources import Media

# (row, column, rows spanned, columns spanned, text)
Cell = tuple[int, int, int, int, str]

# Two headings over two columns each, under them the columns' own headings, a label column spanning both header rows.
PRICES: list[Cell] = [
    (0, 0, 2, 1, "Item"), (0, 1, 1, 2, "Price"), (0, 3, 1, 2, "Stock"),
    (1, 1, 1, 1, "Net"), (1, 2, 1, 1, "Gross"), (1, 3, 1, 1, "Shop"), (1, 4, 1, 1, "Depot"),
    (2, 0, 1, 1, "Lamp"), (2, 1, 1, 1, "12.00"), (2, 2, 1, 1, "14.40"), (2, 3, 1, 1, "31"), (2, 4, 1, 1, "7"),
    (3, 0, 1, 1, "R&D <kit>"), (3, 1, 1, 1, "80.00"), (3, 2, 1, 1, "96.00"), (3, 3, 1, 1, "2"), (3, 4, 1, 1, "15"),
]
# A first column whose labels each span two rows.
VISITS: list[Cell] = [
    (0, 0, 1, 1, "Region"), (0, 1, 1, 1, "City"), (0, 2, 1, 1, "Visits"),
    (1, 0, 2, 1, "North"), (1, 1, 1, 1, "Leeds"), (1, 2, 1, 1, "120"), (2, 1, 1, 1, "York"), (2, 2, 1, 1, "85"),
    (3, 0, 2, 1, "South"), (3, 1, 1, 1, "Bath"), (3, 2, 1, 1, "60"), (4, 1, 1, 1, "Exeter"), (4, 2, 1, 1, "44"),
]
BEFORE = "The table below was drawn with its rules around every cell."
AFTER = "The sentence after the table closes the page."


def _ruled_pdf(cells: list[Cell], widths: list[float], caption_in_frame: str = "") -> bytes:
    """A page with a paragraph, a table of `cells` each outlined by its own rectangle (text centred in it, the header
    row bold), and a paragraph after it; `caption_in_frame`: a caption set at the top of one frame drawn around it."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((56, 90), BEFORE, fontsize=10, fontname="helv")
    x, y, height = 56.0, 130.0, 18.0
    if caption_in_frame:
        page.insert_text((x + 6, y + 14), caption_in_frame, fontsize=9, fontname="helv")
        page.draw_rect(pymupdf.Rect(x, y, x + sum(widths), y + 24 + height * (1 + max(c[0] + c[2] for c in cells))),
                       width=0.6)
        y += 24
    xs = [x]
    for width in widths:
        xs.append(xs[-1] + width)
    for row, column, rows, columns, text in cells:
        rect = pymupdf.Rect(xs[column], y + row * height, xs[column + columns], y + (row + rows) * height)
        page.draw_rect(rect, width=0.6)
        font = "hebo" if row == 0 else "helv"
        left = rect.x0 + (rect.width - pymupdf.get_text_length(text, fontname=font, fontsize=9)) / 2
        page.insert_text((left, (rect.y0 + rect.y1) / 2 + 3.2), text, fontsize=9, fontname=font)
    bottom = y + height * max(c[0] + c[2] for c in cells)
    page.insert_text((56, bottom + 40), AFTER, fontsize=10, fontname="helv")
    return doc.tobytes()


def _body(pdf: bytes) -> str:
    with open_document(Media(data=pdf, label="'table.pdf'", kind="pdf")) as doc:
        return doc.markdown([1])[1].body


def _grid(body: str, corner: str) -> list[list[str]]:
    [grid] = [g for g in tables(body) if g and normalise(g[0][0]) == normalise(corner)]
    return grid


@pytest.fixture(scope="module")
def prices() -> str:
    return _body(_ruled_pdf(PRICES, [90, 70, 70, 60, 60]))


@pytest.fixture(scope="module")
def visits() -> str:
    return _body(_ruled_pdf(VISITS, [100, 90, 80]))


@pytest.mark.parametrize("cell, neighbour, where", [
    ("Net", "Price", "up"), ("Gross", "Price", "up"), ("Shop", "Stock", "up"), ("Depot", "Stock", "up"),
    ("Price", "Net", "down"), ("Stock", "Shop", "down"), ("Price", "Stock", "right"), ("Stock", "Price", "left"),
    ("Gross", "Shop", "right"), ("Shop", "Gross", "left"), ("Lamp", "Item", "up"), ("Net", "Item", "left"),
    ("12.00", "Net", "up"), ("14.40", "Gross", "up"), ("31", "Shop", "up"), ("7", "Depot", "up"),
    ("14.40", "31", "right"), ("31", "14.40", "left"), ("96.00", "80.00", "left"), ("2", "31", "up"),
    ("R&D <kit>", "80.00", "right"), ("Lamp", "R&D <kit>", "down"),
])
def test_headings_spanning_two_columns_sit_over_both(prices, cell, neighbour, where):
    assert table_neighbour(tables(prices), cell, neighbour, where), prices


def test_a_spanning_heading_adds_no_column_of_its_own(prices):
    grid = _grid(prices, "Item")
    assert len(grid) == 4 and all(len(row) == 5 for row in grid)  # five drawn columns, no empty one between
    assert [normalise(c) for c in grid[0]] == ["item", "price", "price", "stock", "stock"]
    assert prices.index(BEFORE) < prices.index("<table>") < prices.index(AFTER)


@pytest.mark.parametrize("cell, neighbour, where", [
    ("Leeds", "North", "left"), ("York", "North", "left"), ("Bath", "South", "left"), ("Exeter", "South", "left"),
    ("North", "Leeds", "right"), ("North", "Region", "up"), ("South", "North", "up"), ("North", "South", "down"),
    ("York", "Leeds", "up"), ("Leeds", "York", "down"), ("85", "York", "left"), ("York", "85", "right"),
    ("Bath", "York", "up"), ("44", "60", "up"),
])
def test_labels_spanning_two_rows_sit_beside_both(visits, cell, neighbour, where):
    assert table_neighbour(tables(visits), cell, neighbour, where), visits


def test_a_rebuilt_table_keeps_its_text_as_data(prices):
    assert "R&amp;D &lt;kit&gt;" in prices and "<kit>" not in prices


def test_a_frame_that_also_holds_a_caption_keeps_the_layout_grid():
    caption = "Table 4. Visits to each office in the survey year."
    body = _body(_ruled_pdf(VISITS, [100, 90, 80], caption_in_frame=caption))
    # The rules' grid would hold the caption as a row of its own while the layout model keeps it a paragraph.
    assert body.count("Visits to each office") == 1 and "Leeds" in body


def test_rules_that_merge_what_the_text_divides_are_not_taken():
    frame = (0.0, 0.0, 300.0, 40.0)
    one_column = [(0.0, 0.0, 300.0, 20.0), (0.0, 20.0, 300.0, 40.0)]
    layout = [[(0.0, 0.0, 100.0, 20.0), (100.0, 0.0, 300.0, 20.0)],
              [(0.0, 20.0, 100.0, 40.0), (100.0, 20.0, 300.0, 40.0)]]
    side_by_side = [(10, 5, 40, 15, "North", 0, 0, 0), (110, 5, 140, 15, "1,204", 0, 0, 1)]
    assert _under_divided(side_by_side, frame, one_column, layout)
    # Two lines of one cell, or one line per ruled cell, are no sign of missing rules.
    stacked = [(10, 5, 40, 15, "North", 0, 0, 0), (110, 25, 140, 35, "1,204", 0, 1, 0)]
    assert not _under_divided(stacked, frame, one_column, layout)
    two_columns = [(0.0, 0.0, 100.0, 40.0), (100.0, 0.0, 300.0, 40.0)]
    assert not _under_divided(side_by_side, frame, two_columns, layout)
