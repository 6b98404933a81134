"""Document quality with known truth: born-digital PDFs built here with PyMuPDF, scored with unit tests of the
kind public OCR benchmarks use (a sentence present within a small edit distance, running headers and page numbers
absent from the body, A before B, table cells' neighbours), for ocr_document's text path (the layout Markdown) and
the old flat text layer (`get_text("text")`), with pages/s of each and of a 50-page paper read under the default
time budget.

    python -m bench.documents                 # prints the table
    python -m bench.documents --append BENCHMARKS.md

No model is needed: the text path never loads one. The pages whose text is vector outlines or a picture are scored
apart ("needs the model"): the text layer cannot hold their text, so the text path must route those regions to the
model, and only those: the report says which pages the coverage check routes (and why) against the truth, and, on
the long paper, how many model calls the page loop makes (answered empty at once here: their model time is not in
the timing, the routing is).
"""

from __future__ import annotations

import argparse
import html.parser
import platform
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

A4 = (595.0, 842.0)
MARGIN = 56.0
GUTTER = 24.0
HEADER = "Journal of Synthetic Documents - Vol. 7, No. 2"
FONT_SIZE = 10.0
LEADING = 13.0

# Body paragraphs of the two-column pages. A "|" marks where a word may break with a hyphen at a line end; the
# truth is the word without it (dehyphenated).
COLUMN_TEXT = [
    "Non-governmental organi|sations collected the measure|ments from every regional office during the spring "
    "survey, and each office reported its figures within two weeks of the request.",
    "The infra|structure budget was reviewed by an independent committee, which found that maintenance costs had "
    "grown faster than the original projec|tions of the planning department.",
    "Most respondents preferred electronic forms to paper ones, although older partici|pants asked for printed "
    "copies and a telephone line for questions about the question|naire.",
    "Transport links between the northern districts improved after the new timetable, cutting the average commute "
    "by eleven minutes according to the municipal statistics office.",
    "Further analysis of the house|hold data showed that energy consumption fell in winter months where insulation "
    "grants had been awarded in the previous year.",
    "The committee recommends that the survey be repeated every two years, with the same sampling frame, so that "
    "changes can be measured against a stable reference.",
]


@dataclass(frozen=True)
class Check:
    """One unit test on one page's output."""

    kind: str  # present | absent | order | table | model
    page: int
    a: str
    b: str = ""  # order: what must come after `a`; table: the neighbour's text
    where: str = ""  # table: the neighbour's direction (left, right, up, down)


@dataclass
class Built:
    """A generated document and the checks its truth gives."""

    pdf: bytes
    checks: list[Check] = field(default_factory=list)


# ------------------------------------------------------------------ building the document


def _word_breaks(word: str) -> list[tuple[str, str]]:
    """Ways to break a marked word at a line end: (head with hyphen, tail)."""
    parts = word.split("|")
    return [("".join(parts[:i]) + "-", "".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]


def _wrap(text: str, width: float, size: float = FONT_SIZE, font: str = "helv") -> list[str]:
    """Greedy line breaking at `width` points, breaking marked words with a hyphen where the rest would not fit."""
    import pymupdf

    def length(s: str) -> float:
        return pymupdf.get_text_length(s, fontname=font, fontsize=size)

    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word.replace('|', '')}".strip()
        if length(trial) <= width:
            line = trial
            continue
        for head, tail in _word_breaks(word):
            if length(f"{line} {head}".strip()) <= width:
                lines.append(f"{line} {head}".strip())
                line = tail
                break
        else:
            lines.append(line)
            line = word.replace("|", "")
    if line:
        lines.append(line)
    return lines


def _furniture(page: Any, number: int, count: int) -> list[Check]:
    """The running header and the page number, and the checks that keep them out of the body."""
    page.insert_text((MARGIN, 34), HEADER, fontsize=8, fontname="helv")
    page.draw_line((MARGIN, 40), (A4[0] - MARGIN, 40), width=0.5)
    footer = f"Page {number} of {count}"
    page.insert_text((A4[0] / 2 - 24, A4[1] - 28), footer, fontsize=8, fontname="helv")
    return [Check("absent", number, HEADER), Check("absent", number, footer)]


def _columns(page: Any, number: int, paragraphs: list[str], top: float, heading: str | None = None) -> list[Check]:
    """Two columns of paragraphs (with hyphenated line ends); checks: each sentence present, in order, and the
    left column's last paragraph before the right column's first."""
    width = (A4[0] - 2 * MARGIN - GUTTER) / 2
    x, y, column = MARGIN, top, 0
    bottom = A4[1] - 70
    placed: list[tuple[int, str]] = []
    draws: list[tuple[int, tuple[float, float], str, float, str]] = []
    items: list[tuple[str, str]] = ([("heading", heading)] if heading else []) + [("text", p) for p in paragraphs]
    for kind, text in items:
        size, font = (13.0, "hebo") if kind == "heading" else (FONT_SIZE, "helv")
        lines = _wrap(text, width, size, font)
        if y + len(lines) * LEADING > bottom and column == 0:
            x, y, column = MARGIN + width + GUTTER, top, 1
        for line in lines:
            draws.append((column, (x, y), line, size, font))
            y += LEADING if kind == "text" else 18
        y += 8
        placed.append((column, text.replace("|", "")))
    # The right column goes into the content stream first, as some producers write it: reading order must come
    # from the page's geometry, not from the order of the text layer.
    for _, point, line, size, font in sorted(draws, key=lambda d: -d[0]):
        page.insert_text(point, line, fontsize=size, fontname=font)
    checks = [Check("present", number, text) for kind, text in zip([k for k, _ in items], [t for _, t in placed])
              if kind == "text"]
    texts = [t for _, t in placed]
    checks += [Check("order", number, _head(a), _head(b)) for a, b in zip(texts, texts[1:])]
    return checks


def _head(text: str, words: int = 6) -> str:
    return " ".join(text.split()[:words])


def _grid_table(
    page: Any, x: float, y: float, widths: list[float], rows: list[list[str | None]], height: float = 18
) -> float:
    """A ruled table; a None cell is covered by the cell to its left (a column span). Returns its bottom edge."""
    import pymupdf

    total = sum(widths)
    for r, row in enumerate(rows):
        top = y + r * height
        page.draw_line((x, top), (x + total, top), width=0.6)
        left = x
        c = 0
        while c < len(row):
            span = 1
            while c + span < len(row) and row[c + span] is None:
                span += 1
            cell_width = sum(widths[c: c + span])
            page.draw_line((left, top), (left, top + height), width=0.6)
            text = row[c] or ""
            font = "hebo" if r == 0 else "helv"
            tw = pymupdf.get_text_length(text, fontname=font, fontsize=9)
            page.insert_text((left + (cell_width - tw) / 2, top + 12.5), text, fontsize=9, fontname=font)
            left += cell_width
            c += span
        page.draw_line((left, top), (left, top + height), width=0.6)
    bottom = y + len(rows) * height
    page.draw_line((x, bottom), (x + total, bottom), width=0.6)
    return bottom


def _table_checks(number: int, rows: list[list[str | None]]) -> list[Check]:
    """Each cell's right and lower neighbour (spans expanded: the spanning cell is its columns' upper neighbour)."""
    grid = [[None] * len(row) for row in rows]
    for r, row in enumerate(rows):
        last = None
        for c, cell in enumerate(row):
            last = cell if cell is not None else last
            grid[r][c] = last
    checks = []
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            if c + 1 < len(row) and row[c + 1] != cell:
                checks.append(Check("table", number, cell, row[c + 1], "right"))
            if r + 1 < len(grid) and grid[r + 1][c] != cell and (r == 0 or c % 2 == 0):
                checks.append(Check("table", number, grid[r + 1][c], cell, "up"))
    return checks


def _outlined(page: Any, rect: Any, text: str, size: float) -> None:
    """`text` drawn as vector outlines (no text layer): set on a scratch page, written out as SVG with glyphs as
    paths, and placed on `page`."""
    import pymupdf

    scratch = pymupdf.open()
    s = scratch.new_page(width=rect.width, height=rect.height)
    s.insert_text((2, size + 2), text, fontsize=size, fontname="hebo")
    svg = s.get_svg_image(text_as_path=True)
    drawing = pymupdf.open(stream=svg.encode(), filetype="svg")
    pdf = pymupdf.open(stream=drawing.convert_to_pdf(), filetype="pdf")
    page.show_pdf_page(rect, pdf, 0)


def _picture_of_text(page: Any, rect: Any, lines: list[str]) -> None:
    """`lines` as a picture (pixels only), as a screenshot pasted into a report."""
    import pymupdf

    scratch = pymupdf.open()
    s = scratch.new_page(width=rect.width, height=rect.height)
    s.draw_rect(s.rect, color=(0.4, 0.4, 0.4), fill=(0.95, 0.95, 0.9))
    for i, line in enumerate(lines):
        s.insert_text((8, 20 + 16 * i), line, fontsize=11, fontname="cour")
    page.insert_image(rect, stream=s.get_pixmap(dpi=150).tobytes("png"))


def build(copies: int = 1) -> Built:
    """The quality document (6 pages), `copies` times over (a longer paper for speed), with its checks."""
    import pymupdf

    doc = pymupdf.open()
    built = Built(b"")
    count = 6 * copies
    for copy in range(copies):
        base = 6 * copy
        for offset, make in enumerate((_page_paper, _page_tables, _page_footnotes, _page_outlined, _page_picture,
                                       _page_columns)):
            number = base + offset + 1
            page = doc.new_page(width=A4[0], height=A4[1])
            built.checks += _furniture(page, number, count)
            built.checks += make(page, number)
    built.pdf = doc.tobytes(garbage=3, deflate=True)
    return built


def _page_paper(page: Any, number: int) -> list[Check]:
    title = "Regional Survey of Public Services"
    checks = _columns(page, number, COLUMN_TEXT[:4], 430, heading="1 Introduction")
    # The title is written last: only its place at the top makes it come first.
    page.insert_text((MARGIN, 90), title, fontsize=20, fontname="hebo")
    page.insert_text((MARGIN, 112), "A. Example and B. Sample, Office of Statistics", fontsize=10, fontname="helv")
    abstract = ("Abstract. This paper reports the regional survey of public services carried out in the spring, "
                "with its method, its response rates and the committee's recommendations for the next round.")
    for i, line in enumerate(_wrap(abstract, A4[0] - 2 * MARGIN)):
        page.insert_text((MARGIN, 150 + i * LEADING), line, fontsize=FONT_SIZE, fontname="helv")
    checks += [Check("present", number, title), Check("present", number, abstract),
               Check("order", number, title, _head(abstract)), Check("order", number, _head(abstract), "1 Introduction")]
    return checks


def _page_columns(page: Any, number: int) -> list[Check]:
    return _columns(page, number, COLUMN_TEXT[3:] + COLUMN_TEXT[:2], 80, heading="4 Discussion")


SALES = [
    ["Region", "Units", "Revenue", "Growth"],
    ["North", "1,204", "18,060", "4.1%"],
    ["South", "987", "14,805", "-2.3%"],
    ["East", "1,530", "22,950", "7.8%"],
    ["West", "644", "9,660", "0.5%"],
]
MERGED = [
    ["Product", "Quarter", None, "Total"],
    ["", "Q1", "Q2", ""],
    ["Lamps", "310", "295", "605"],
    ["Chairs", "122", "140", "262"],
]


def _page_tables(page: Any, number: int) -> list[Check]:
    page.insert_text((MARGIN, 80), "2 Results", fontsize=13, fontname="hebo")
    intro = "Table 1 lists the units sold and the revenue of each region in the reporting year."
    page.insert_text((MARGIN, 102), intro, fontsize=FONT_SIZE, fontname="helv")
    bottom = _grid_table(page, MARGIN, 120, [110, 90, 90, 90], SALES)
    after = "Table 2 splits the product totals by quarter for the two product lines."
    page.insert_text((MARGIN, bottom + 40), after, fontsize=FONT_SIZE, fontname="helv")
    _grid_table(page, MARGIN, bottom + 58, [110, 90, 90, 90], MERGED)
    checks = [Check("present", number, intro), Check("present", number, after), Check("order", number, intro, after)]
    # The merged table's empty cells (under "Product" and "Total") have nothing to check.
    return checks + _table_checks(number, SALES) + [c for c in _table_checks(number, MERGED) if c.a and c.b]


FOOTNOTE = "The survey frame excludes offices opened after the first of January."
ITEMS = ["Collect the returns from each office.", "Check the totals against last year's report.",
         "Publish the tables on the statistics portal."]


def _page_footnotes(page: Any, number: int) -> list[Check]:
    import pymupdf

    page.insert_text((MARGIN, 80), "3 Procedure", fontsize=13, fontname="hebo")
    body = "Every office followed the same three steps before the deadline in March"
    page.insert_text((MARGIN, 102), body, fontsize=FONT_SIZE, fontname="helv")
    x = MARGIN + pymupdf.get_text_length(body, fontname="helv", fontsize=FONT_SIZE)
    page.insert_text((x + 1, 98), "1", fontsize=6, fontname="helv")
    page.insert_text((x + 5, 102), ".", fontsize=FONT_SIZE, fontname="helv")
    y = 124
    for item in ITEMS:
        page.insert_text((MARGIN + 8, y), "\u2022", fontsize=FONT_SIZE, fontname="helv")
        page.insert_text((MARGIN + 20, y), item, fontsize=FONT_SIZE, fontname="helv")
        y += 16
    closing = "The results of each step were logged in the central register for later audit by the committee."
    page.insert_text((MARGIN, y + 12), closing, fontsize=FONT_SIZE, fontname="helv")
    page.draw_line((MARGIN, A4[1] - 70), (MARGIN + 120, A4[1] - 70), width=0.5)
    page.insert_text((MARGIN, A4[1] - 58), "1", fontsize=6, fontname="helv")
    page.insert_text((MARGIN + 5, A4[1] - 55), FOOTNOTE, fontsize=8, fontname="helv")
    checks = [Check("present", number, item) for item in ITEMS]
    checks += [Check("present", number, FOOTNOTE), Check("present", number, closing)]
    checks += [Check("order", number, a, b) for a, b in zip(ITEMS, ITEMS[1:])]
    checks += [Check("order", number, ITEMS[-1], closing), Check("order", number, _head(closing), FOOTNOTE)]
    return checks


OUTLINED_TITLE = "Annual Report on Water Quality"
PICTURED = ["ERROR 504: upstream timeout", "retry scheduled in 30 seconds"]


def _page_outlined(page: Any, number: int) -> list[Check]:
    import pymupdf

    _outlined(page, pymupdf.Rect(MARGIN, 60, A4[0] - MARGIN, 100), OUTLINED_TITLE, 22)
    body = "Samples were taken at forty sites along the river and tested for nitrates and phosphates every month."
    for i, line in enumerate(_wrap(body, A4[0] - 2 * MARGIN)):
        page.insert_text((MARGIN, 130 + i * LEADING), line, fontsize=FONT_SIZE, fontname="helv")
    return [Check("present", number, body), Check("model", number, OUTLINED_TITLE)]


def _page_picture(page: Any, number: int) -> list[Check]:
    import pymupdf

    body = "The screenshot below shows the message the gateway returned during the outage on the second day."
    for i, line in enumerate(_wrap(body, A4[0] - 2 * MARGIN)):
        page.insert_text((MARGIN, 80 + i * LEADING), line, fontsize=FONT_SIZE, fontname="helv")
    _picture_of_text(page, pymupdf.Rect(MARGIN, 120, MARGIN + 300, 180), PICTURED)
    return [Check("present", number, body)] + [Check("model", number, line) for line in PICTURED]


# ------------------------------------------------------------------ scoring


def normalise(text: str) -> str:
    """Text as the checks compare it: Markdown emphasis, heading marks, bullets and table pipes gone, one space."""
    text = re.sub(r"<[^>]+>", " ", text)  # HTML tables' tags
    text = re.sub(r"[*_`#|]+", " ", text)
    text = re.sub(r"^\s*[-\u2022]\s+", " ", text, flags=re.M)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split()).lower()


def fuzzy_find(needle: str, hay: str, max_ratio: float = 0.05) -> int | None:
    """Where `needle` ends in `hay` with at most `max_ratio` of its length in edits (at least 1), or None: the
    approximate substring match (Sellers) the benchmarks score presence with."""
    if not needle:
        return 0
    exact = hay.find(needle)
    if exact >= 0:
        return exact
    limit = max(1, int(len(needle) * max_ratio))
    previous = list(range(len(needle) + 1))
    best, where = limit + 1, None
    for j, ch in enumerate(hay):
        current = [0]
        for i, nch in enumerate(needle):
            current.append(min(previous[i] + (nch != ch), previous[i + 1] + 1, current[i] + 1))
        if current[-1] < best:
            best, where = current[-1], j - len(needle) + 1
        previous = current
    return max(0, where) if best <= limit else None


class _Tables(html.parser.HTMLParser):
    """HTML tables as grids, row and column spans expanded."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._rows: list[list[tuple[str, int, int]]] = []
        self._cell: list[str] | None = None
        self._span = (1, 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._rows = []
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
            self._span = (int(a.get("rowspan") or 1), int(a.get("colspan") or 1))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._rows:
            self._rows[-1].append((" ".join(self._cell), *self._span))
            self._cell = None
        elif tag == "table":
            self.tables.append(_expand(self._rows))


def _expand(rows: list[list[tuple[str, int, int]]]) -> list[list[str]]:
    grid: dict[tuple[int, int], str] = {}
    for r, row in enumerate(rows):
        c = 0
        for text, rowspan, colspan in row:
            while (r, c) in grid:
                c += 1
            for dr in range(rowspan):
                for dc in range(colspan):
                    grid[(r + dr, c + dc)] = text
            c += colspan
    if not grid:
        return []
    height = max(r for r, _ in grid) + 1
    width = max(c for _, c in grid) + 1
    return [[grid.get((r, c), "") for c in range(width)] for r in range(height)]


def tables(markdown: str) -> list[list[list[str]]]:
    """The Markdown pipe tables and HTML tables of a page, as grids of cell text."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in markdown.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    parser = _Tables()
    parser.feed(markdown)
    return found + parser.tables


_STEP = {"right": (0, 1), "left": (0, -1), "up": (-1, 0), "down": (1, 0)}


def table_neighbour(grids: list[list[list[str]]], cell: str, neighbour: str, where: str) -> bool:
    """Whether some table has a cell reading `cell` whose `where` neighbour reads `neighbour`."""
    dr, dc = _STEP[where]
    want, near = normalise(cell), normalise(neighbour)
    for grid in grids:
        for r, row in enumerate(grid):
            for c, text in enumerate(row):
                if normalise(text) != want:
                    continue
                rr, cc = r + dr, c + dc
                if 0 <= rr < len(grid) and 0 <= cc < len(grid[rr]) and normalise(grid[rr][cc]) == near:
                    return True
    return False


def passes(check: Check, body: str) -> bool:
    """Whether a page's body passes `check` (`model` checks: the text is present, as `present`)."""
    text = normalise(body)
    if check.kind in ("present", "model"):
        return fuzzy_find(normalise(check.a), text) is not None
    if check.kind == "absent":
        return normalise(check.a) not in text
    if check.kind == "order":
        a, b = fuzzy_find(normalise(check.a), text), fuzzy_find(normalise(check.b), text)
        return a is not None and b is not None and a < b
    if check.kind == "table":
        return table_neighbour(tables(body), check.a, check.b, check.where)
    raise ValueError(f"unknown check kind {check.kind!r}")


def score(checks: list[Check], bodies: dict[int, str]) -> dict[str, tuple[int, int]]:
    """Passed and total checks per kind."""
    result: dict[str, tuple[int, int]] = {}
    for check in checks:
        ok, total = result.get(check.kind, (0, 0))
        result[check.kind] = (ok + passes(check, bodies.get(check.page, "")), total + 1)
    return result


# ------------------------------------------------------------------ the two paths


def layout_bodies(pdf: bytes, pages: list[int], batch: int = 4) -> tuple[dict[int, str], float]:
    """The text path's bodies (headers and footers apart) and the seconds it took, `batch` pages a parse as the
    server does."""
    from mcp_vision.inputs.pdf import open_document
    from mcp_vision.inputs.sources import Media

    with open_document(Media(data=pdf, label="'bench.pdf'", kind="pdf")) as doc:
        started = time.perf_counter()
        bodies: dict[int, str] = {}
        for i in range(0, len(pages), batch):
            bodies.update({n: p.body for n, p in doc.markdown(pages[i: i + batch]).items()})
        return bodies, time.perf_counter() - started


def flat_bodies(pdf: bytes, pages: list[int]) -> tuple[dict[int, str], float]:
    """The old path: `get_text("text")` per page, and the seconds it took."""
    from mcp_vision.inputs.pdf import open_document
    from mcp_vision.inputs.sources import Media

    with open_document(Media(data=pdf, label="'bench.pdf'", kind="pdf")) as doc:
        started = time.perf_counter()
        bodies = {n: doc.text_layer(n) for n in pages}
        return bodies, time.perf_counter() - started


def routing(pdf: bytes, pages: list[int]) -> tuple[dict[int, str], float]:
    """The pages the coverage check sends to the model, each with why ("whole page", or its regions' sources),
    and the seconds the check took."""
    from mcp_vision.inputs.pdf import open_document
    from mcp_vision.inputs.sources import Media

    routed: dict[int, str] = {}
    with open_document(Media(data=pdf, label="'bench.pdf'", kind="pdf")) as doc:
        started = time.perf_counter()
        for number in pages:
            coverage = doc.coverage(number)
            if coverage.whole_page:
                routed[number] = "whole page"
            elif coverage.regions:
                routed[number] = ", ".join(region.source for region in coverage.regions)
        return routed, time.perf_counter() - started


@dataclass
class ModelCalls:
    """What the page loop asked of the model: images sent, and of them regions, by page."""

    pages: list[int] = field(default_factory=list)
    regions: list[int] = field(default_factory=list)


def _counting_reader(budget: float, calls: ModelCalls) -> Any:
    """A PageReader whose model answers every image at once with nothing, counting what it was sent."""
    from mcp_vision.backend.base import ChatResult
    from mcp_vision.budget import Budget
    from mcp_vision.ocr import PageReader

    class Counting(PageReader):
        async def read(self, images: list, numbers: list[int], label: str, index: float, total: int, *,
                       prompts: list[str] | None = None, keep: bool = True) -> list[ChatResult]:
            (calls.pages if keep else calls.regions).extend(numbers)
            return [ChatResult("", 0, 0, 0, [], "stop", 0.0) for _ in images]

    async def no_model() -> Any:
        return None  # no speeds: the loop plans with the time left alone

    return Counting(None, None, "", no_model, max_tiles=1, max_new_tokens=1, progress=None,  # type: ignore[arg-type]
                    budget=Budget(budget))


async def read_paper(pdf: bytes, pages: int, budget: float) -> tuple[int, int, float, str | None, ModelCalls]:
    """ocr_document's page loop on the first `pages` pages of `pdf` (mode auto, decoders isolated, the default
    budget): pages returned, pages asked for, seconds, next_pages, and the model calls it made."""
    from mcp_vision.inputs.pdf import open_pdf
    from mcp_vision.inputs.sources import Media
    from mcp_vision.ocr import read_pages
    from mcp_vision.settings import Settings

    settings = Settings()
    calls = ModelCalls()
    reader = _counting_reader(budget, calls)
    doc = await open_pdf(Media(data=pdf, label="'paper.pdf'", kind="pdf"), isolate=True)
    try:
        read = await read_pages(doc, f"1-{pages}", "auto", 150, settings, reader)
    finally:
        await doc.aclose()
    return len(read.pages), pages, reader.budget.elapsed(), read.next_pages, calls


# ------------------------------------------------------------------ the report


def cpu() -> str:
    """The CPU's model name and the matrix/vector flags that decide kernel speed."""
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("unknown", "", "x86_64"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    shown = [f for f in ("amx_tile", "amx_bf16", "amx_int8", "avx512f", "avx512_bf16", "avx512_vnni") if f in flags]
    import os

    return f"{name}, {os.cpu_count()} cores; flags: {' '.join(shown) or 'no AMX/AVX-512'}"


def _rows(result: dict[str, tuple[int, int]]) -> Iterator[tuple[str, int, int]]:
    for kind in ("present", "absent", "order", "table", "model"):
        if kind in result:
            yield (kind, *result[kind])


def report(paper_pages: int = 50, budget: float = 50.0) -> str:
    import anyio

    import pymupdf
    import pymupdf4llm

    built = build()
    pages = list(range(1, 7))
    layout, layout_s = layout_bodies(built.pdf, pages)
    flat, flat_s = flat_bodies(built.pdf, pages)
    ours, old = score(built.checks, layout), score(built.checks, flat)
    paper = build(copies=-(-paper_pages // 6))
    long_pages = list(range(1, paper_pages + 1))
    _, layout_long = layout_bodies(paper.pdf, long_pages)
    _, flat_long = flat_bodies(paper.pdf, long_pages)
    read, count, seconds, rest, calls = anyio.run(read_paper, paper.pdf, paper_pages, budget)
    routed, routing_s = routing(built.pdf, pages)
    truth = sorted({check.page for check in built.checks if check.kind == "model"})
    wrong = sorted(set(routed) - set(truth))
    missed = sorted(set(truth) - set(routed))
    paper_truth = [n for n in range(1, read + 1) if (n - 1) % 6 + 1 in truth]

    def pct(ok: int, total: int) -> str:
        return f"{ok}/{total} ({100 * ok / total:.0f}%)"

    target = {"present": "", "absent": "", "order": "", "table": " (target 85%)", "model": " (needs the model)"}
    lines = [
        f"### Document quality (bench/documents.py), {time.strftime('%Y-%m-%d')}",
        "",
        f"`python -m bench.documents` on {cpu()}; PyMuPDF {pymupdf.__version__}, pymupdf4llm "
        f"{pymupdf4llm.__version__} with PyMuPDF Layout.",
        "",
        "| checks | text path (layout Markdown) | old flat text layer |",
        "|---|---|---|",
    ]
    for kind, ok, total in _rows(ours):
        lines.append(f"| {kind}{target[kind]} | {pct(ok, total)} | {pct(*old[kind])} |")
    pao = [ours[k] for k in ("present", "absent", "order")]
    pao_old = [old[k] for k in ("present", "absent", "order")]
    lines.append(f"| present + absent + order (target 90%) | {pct(sum(a for a, _ in pao), sum(b for _, b in pao))} | "
                 f"{pct(sum(a for a, _ in pao_old), sum(b for _, b in pao_old))} |")
    lines += [
        f"| pages/s, {paper_pages}-page paper | {paper_pages / layout_long:.2f} | {paper_pages / flat_long:.1f} |",
        "",
        f"ocr_document's page loop (mode auto, isolated decoders) on the {count}-page paper with a {budget:g} s "
        f"budget: {read} pages in {seconds:.1f} s" + (f", next_pages=\"{rest}\"." if rest else ", none left."),
        "",
        "Routing to the model (text the page shows but its text layer lacks), 6-page document: "
        + "; ".join(f"page {n}: {why}" for n, why in sorted(routed.items()))
        + f" (truth: pages {', '.join(map(str, truth))}); ordinary pages routed: "
        + (", ".join(map(str, wrong)) if wrong else "none") + "; missed: " + (", ".join(map(str, missed)) or "none")
        + f"; the check took {1000 * routing_s / len(pages):.0f} ms a page.",
        "",
        f"On the {count}-page paper the page loop sent the model {len(calls.regions)} regions (pages "
        f"{', '.join(map(str, sorted(set(calls.regions)))) or 'none'}; the outlined-title and picture pages among the "
        f"{read} returned: {', '.join(map(str, paper_truth)) or 'none'}) and {len(calls.pages)} whole pages; the model "
        "answered at once here, so the timing is the text path's alone.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--append", type=Path, help="append the table to this Markdown file (BENCHMARKS.md)")
    parser.add_argument("--pages", type=int, default=50, help="pages of the long paper timed (default 50)")
    args = parser.parse_args(argv)
    text = report(args.pages)
    print(text)
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
