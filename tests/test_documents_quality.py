"""The text path's document quality on bench/documents.py's generated document (known truth): a handful of the
benchmark's checks on the layout Markdown (pages 1-3: two columns, tables, footnotes; headers and page numbers apart),
and the scoring itself, which must fail the flat text layer where it falls short. No model; speed is bench's."""

from __future__ import annotations

import pytest

from bench.documents import HEADER, MERGED, SALES, Check, build, flat_bodies, fuzzy_find, passes, score, tables
from mcp_vision.inputs.pdf import open_document
from mcp_vision.inputs.sources import Media

PAGES = [1, 2, 3]


@pytest.fixture(scope="module")
def built():
    return build()


@pytest.fixture(scope="module")
def laid_out(built):
    """Pages 1-3 as the server lays them out: one parse (one decoder round trip's worth)."""
    with open_document(Media(data=built.pdf, label="'bench.pdf'", kind="pdf")) as doc:
        return doc.markdown(PAGES)


def _checks(built, kind: str) -> list[Check]:
    return [c for c in built.checks if c.kind == kind and c.page in PAGES]


def test_running_headers_and_page_numbers_are_apart_from_the_body(built, laid_out):
    for number in PAGES:
        page = laid_out[number]
        assert HEADER in page.header and f"Page {number} of 6" in page.footer
    absent = _checks(built, "absent")
    assert absent and all(passes(c, laid_out[c.page].body) for c in absent)


def test_two_columns_read_in_order_with_line_end_hyphens_joined(built, laid_out):
    body = laid_out[1].body
    # Written right column first and hyphenated at line ends ("organi-" / "sations"): read whole, left column first.
    assert "organisations collected the measurements" in body and "questionnaire" in body
    assert body.index("Regional Survey of Public Services") < body.index("1 Introduction")
    for kind in ("present", "order"):
        checks = _checks(built, kind)
        assert checks and all(passes(c, laid_out[c.page].body) for c in checks), kind


def test_a_ruled_table_is_a_table_with_its_cells_in_place(built, laid_out):
    [grid] = [g for g in tables(laid_out[2].body) if g and "Region" in g[0][0]]
    assert [[cell.strip("* ") for cell in row] for row in grid] == SALES
    sales = [c for c in _checks(built, "table") if c.a in sum(SALES, []) and c.b in sum(SALES, [])]
    assert len(sales) >= 20 and all(passes(c, laid_out[2].body) for c in sales)


def test_a_header_spanning_two_columns_sits_over_both(built, laid_out):
    [grid] = [g for g in tables(laid_out[2].body) if g and "Product" in g[0][0]]
    assert len(grid[0]) == len(MERGED[0])  # no empty column either side of the spanning header
    merged = [c for c in _checks(built, "table") if c.a in sum(MERGED, []) and c.b in sum(MERGED, [])]
    assert len(merged) >= 10 and all(passes(c, laid_out[2].body) for c in merged)


def test_lists_and_footnotes_keep_their_text(built, laid_out):
    body = laid_out[3].body
    assert body.count("\n- ") >= 3  # the bulleted steps are a Markdown list
    assert "excludes offices opened after the first of January" in body


def test_the_checks_fail_the_flat_text_layer_where_it_falls_short(built):
    flat, _ = flat_bodies(built.pdf, PAGES)
    result = score([c for c in built.checks if c.page in PAGES], flat)
    assert result["absent"][0] == 0  # the running header and page numbers sit in its body
    assert result["table"][0] == 0  # one cell per line: no table at all
    assert result["present"][0] == result["present"][1]  # its text is all there


def test_fuzzy_presence_allows_a_few_edits_and_no_more():
    hay = "the non governmental organi sations collected it"
    assert fuzzy_find("organisations collected", hay) is not None  # one edit in 23 characters
    assert fuzzy_find("organisations gathered", hay) is None
    assert fuzzy_find("absent sentence entirely", hay) is None
    assert passes(Check("order", 1, "alpha", "beta"), "alpha then beta")
    assert not passes(Check("order", 1, "beta", "alpha"), "alpha then beta")
    grid = "<table><tr><th colspan=2>Quarter</th></tr><tr><td>Q1</td><td>Q2</td></tr></table>"
    assert passes(Check("table", 1, "Q2", "Quarter", "up"), grid)
    assert not passes(Check("table", 1, "Q2", "Q1", "right"), grid)
