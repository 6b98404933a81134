"""Text a page shows but its text layer lacks: found by comparing the render with the text layer's word boxes
(page_coverage.py), read by the model region by region and merged into the layout Markdown in reading order; a scan
with a partial text layer read whole with that layer as a hint; ordinary digital pages never routed."""

from __future__ import annotations

import io

import pytest
from mcp import Client
from PIL import Image, ImageDraw

from mcp_vision.inputs.page_coverage import Coverage, page_coverage
from mcp_vision.inputs.page_markdown import merge_regions
from mcp_vision.server import build_server
from mcp_vision.service import VisionService

from bench.documents import OUTLINED_TITLE, PICTURED, build

from .support.remote import Reply, engine, quick_backoff, remote_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def built():
    return build()


def _pages(pdf: bytes):
    import pymupdf

    return pymupdf.open(stream=pdf, filetype="pdf")


def test_only_the_outlined_title_and_the_picture_of_text_are_uncovered(built):
    doc = _pages(built.pdf)
    found = {page.number + 1: page_coverage(page) for page in doc}
    assert {n for n, c in found.items() if c.regions} == {4, 5}  # pages 1, 2, 3 and 6 are ordinary
    assert not any(c.whole_page for c in found.values())
    [title] = found[4].regions
    [picture] = found[5].regions
    assert title.source == "vector" and picture.source == "image"
    # The title is drawn in the band 60-100 pt from the top; the picture at (56, 120)-(356, 180).
    assert 50 <= title.bbox[1] and title.bbox[3] <= 105 and title.bbox[2] - title.bbox[0] > 250
    assert 110 <= picture.bbox[1] and picture.bbox[3] <= 190 and 50 <= picture.bbox[0] and picture.bbox[2] <= 366


STYLES = """
<h1 style="font-size:28px">Évaluation générale <i>des résultats</i></h1>
<p style="font-family:serif">Ångström-scale — “quoted”, naïve café, ﬁnance, x<sup>2</sup> + y<sub>i</sub> ≤ 10³, ± 3‰.</p>
<p style="font-family:serif"><i>Italic descenders: jumpy quails, gypsy fjords;</i> <u>words underlined</u>, <b>bold</b>,
<span style="color:#1a3c8f">blue text</span>.</p>
<pre style="font-family:monospace; background:#eeeeee">def f(x):\n    return [i ** 2 for i in range(x)]</pre>
<table border="1" style="border-collapse:collapse">
<tr style="background:#1f3b73;color:white"><th>Region</th><th>Units</th></tr>
<tr><td>North</td><td>1,204</td></tr><tr style="background:#dddddd"><td>South</td><td>987</td></tr></table>
<ul><li>First bullet item</li><li>Second bullet item</li></ul><ol><li>Numbered one</li><li>Numbered two</li></ol>
<p style="font-size:7px">Small print: terms and conditions apply to every offer printed in this tiny font size.</p>
<h2 style="font-size:40px">BIG HEADLINE</h2>
<blockquote style="border-left:4px solid #444; padding-left:8px">A quotation set off by a rule at its left.</blockquote>
"""


def test_ordinary_pages_of_many_styles_are_never_routed():
    import pymupdf

    out = io.BytesIO()
    writer = pymupdf.DocumentWriter(out)
    story = pymupdf.Story(STYLES)
    device = writer.begin_page(pymupdf.paper_rect("a4"))
    story.place(pymupdf.paper_rect("a4") + (50, 50, -50, -50))
    story.draw(device)
    writer.end_page()
    writer.close()
    [page] = _pages(out.getvalue())
    # Accents, ligatures, super- and subscripts, italics, underlines, shaded and dark table rows with white text,
    # bullets, tiny and huge type, a ruled quotation: every mark is text in the layer or a rule.
    assert page_coverage(page) == Coverage()


def _page_with(draw) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((56, 80), "An ordinary line of body text that the text layer holds in full.", fontsize=11)
    draw(page, pymupdf)
    return doc.tobytes()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_a_photograph_a_chart_and_rules_are_not_text():
    import random

    rng = random.Random(7)
    photo = Image.new("RGB", (300, 200))
    for y in range(200):  # a dark smooth gradient with a blob: a photograph's kind of ink, not glyph strokes
        for x in range(300):
            photo.putpixel((x, y), (40 + x // 4, 60 + y // 5, 90))
    ImageDraw.Draw(photo).ellipse((80, 40, 200, 160), fill=(20, 20, 20))

    def draw(page, pymupdf):
        page.insert_image(pymupdf.Rect(56, 120, 356, 320), stream=_png(photo))
        center = pymupdf.Point(450, 500)
        for start, stop, grey in ((0, 140, 0.1), (140, 250, 0.3), (250, 360, 0.5)):  # a pie chart's sectors
            shape = page.new_shape()
            shape.draw_sector(center, center + pymupdf.Point(60, 0) * pymupdf.Matrix(start), stop - start)
            shape.finish(fill=(grey, grey, grey), color=None)
            shape.commit()
        for y in range(600, 700, 20):  # a ruled form
            page.draw_line((56, y), (540, y), width=0.8)
        page.draw_rect(pymupdf.Rect(56, 720, 300, 760), fill=(0, 0, 0))
        page.insert_text((60 + rng.random(), 745), "White on black, in the text layer", fontsize=10, color=(1, 1, 1))

    [page] = _pages(_page_with(draw))
    assert page_coverage(page).regions == ()


def test_a_rotated_page_names_its_regions_as_displayed():
    import pymupdf

    from bench.documents import _outlined

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((56, 300), "Body text that the text layer holds, on a page shown turned.", fontsize=11)
    _outlined(page, pymupdf.Rect(56, 60, 539, 100), OUTLINED_TITLE, 22)
    page.set_rotation(90)
    [region] = page_coverage(page).regions
    # Turned a quarter clockwise, the band at the top (y 60-100) shows at the right edge: x near 842 - 100.
    assert region.bbox[0] > 700 and region.bbox[2] <= 842 - 50
    assert region.layout_bbox[1] < 110 and region.layout_bbox[3] > 60  # the unrotated band, for the layout step


def test_a_poster_sized_page_with_large_outlined_type_is_seen_in_its_points():
    import pymupdf

    from bench.documents import _outlined

    doc = pymupdf.open()
    page = doc.new_page(width=6000, height=6000)  # 36 million square points: looked at with fewer pixels a point
    page.insert_text((100, 300), "A line of body text on a poster. " * 3, fontsize=60)
    _outlined(page, pymupdf.Rect(500, 2000, 5500, 2400), OUTLINED_TITLE, 200)
    [region] = page_coverage(page).regions  # 200 pt type: few strokes a point, as many a line height as any text
    assert region.source == "vector"
    assert 450 <= region.bbox[0] <= 560 and 1990 <= region.bbox[1] <= 2100 and 2150 <= region.bbox[3] <= 2420


def _partial_scan() -> bytes:
    """A scanned page of twelve lines with an invisible OCR layer for its first two lines only."""
    import pymupdf

    scan = Image.new("RGB", (1240, 1754), "white")
    drawing = ImageDraw.Draw(scan)
    for i in range(12):
        drawing.text((100, 150 + 110 * i), f"Scanned line {i + 1}: the quick brown fox jumps over the lazy dog " * 2,
                     fill="black", font_size=34)
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_image(page.rect, stream=_png(scan))
    for i in range(2):
        y = (150 + 110 * i + 30) * 842 / 1754
        page.insert_text((48, y), f"Scanned line {i + 1}: the quick brown fox jumps over the lazy dog " * 2,
                         fontsize=8.4, render_mode=3)
    return doc.tobytes()


def test_a_scan_whose_text_layer_covers_a_few_lines_is_read_whole():
    [page] = _pages(_partial_scan())
    coverage = page_coverage(page)
    assert coverage.whole_page and all(r.source == "image" for r in coverage.regions)


def test_region_texts_go_in_at_their_slots_in_order():
    body = "# Title\n\nFirst paragraph.\n\nSecond paragraph."
    slot = body.index("Second")
    merged = merge_regions(body, [0, slot, slot], ["Outlined heading", "Picture line A", "Picture line B"])
    assert merged == ("Outlined heading\n\n# Title\n\nFirst paragraph.\n\nPicture line A\n\nPicture line B\n\n"
                      "Second paragraph.")
    assert merge_regions(body, [slot], ["  "]) == body  # nothing read there: the body as it was


async def test_the_model_reads_only_the_uncovered_regions_and_they_join_the_markdown(engine, remote_settings,
                                                                                    media_dir, built):
    pdf = media_dir / "report.pdf"
    pdf.write_bytes(built.pdf)
    engine.replies.extend([Reply(pieces=(f"# {OUTLINED_TITLE}",)), Reply(pieces=("\n".join(PICTURED),))])
    async with Client(build_server(remote_settings)) as client:
        # A long budget: the layout step's pace is learned process-wide, and a busy machine must not cut this read.
        r = await client.call_tool("ocr_document", {"document": str(pdf), "time_budget": 600})
    assert not r.is_error, r.content
    pages = {p["page"]: p for p in r.structured_content["pages"]}
    assert all(p["method"] == "layout" for p in pages.values())
    assert [n for n, p in pages.items() if p["regions"]] == [4, 5]  # no ordinary page was routed
    assert len(engine.chats) == 2  # one region each: the model saw nothing else
    [title] = pages[4]["regions"]
    [picture] = pages[5]["regions"]
    assert (title["source"], title["method"], title["text"]) == ("vector", "vision", f"# {OUTLINED_TITLE}")
    assert picture["source"] == "image" and picture["text"] == "\n".join(PICTURED)
    # In reading order: the outlined title above the body it heads, the picture after the sentence introducing it.
    text4, text5 = pages[4]["text"], pages[5]["text"]
    assert text4.startswith(f"# {OUTLINED_TITLE}\n\n") and "Samples were taken" in text4
    assert text5.index("The screenshot below") < text5.index(PICTURED[0]) < text5.index(PICTURED[1])
    for chat in engine.chats:  # each region alone, with the region prompt
        [message] = chat["body"]["messages"]
        assert [c["type"] for c in message["content"]] == ["image_url", "text"]
        assert message["content"][1]["text"].startswith("This image is a part of a document page")


async def test_a_partial_scan_goes_to_the_model_whole_with_its_text_layer_as_a_hint(engine, remote_settings, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(_partial_scan())
    engine.replies.append(Reply(pieces=("```markdown\nScanned line 1\n```",)))
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "dpi": 72})
    assert not r.is_error, r.content
    [page] = r.structured_content["pages"]
    assert page["method"] == "vision" and page["regions"] is None
    assert page["text"] == "Scanned line 1"  # the whole-page code fence the model wrote is taken off
    assert "covers only part of what the page shows" in r.structured_content["note"]
    [message] = engine.chats[0]["body"]["messages"]
    prompt = message["content"][1]["text"]
    assert "text layer holds the text below" in prompt and "Scanned line 2: the quick brown fox" in prompt


async def test_regions_that_do_not_fit_the_budget_name_their_page_in_next_pages(engine, remote_settings, media_dir,
                                                                               built, monkeypatch):
    from mcp_vision import ocr

    def nothing_fits_after_the_first(self, wanted, first):
        self.predicted = None if first else (30.0, 1.0)
        return wanted if first else 0

    monkeypatch.setattr(ocr.PageReader, "pages_that_fit", nothing_fits_after_the_first)
    pdf = media_dir / "report.pdf"
    pdf.write_bytes(built.pdf)
    service = VisionService(remote_settings, None)
    result = await service.ocr_document(str(pdf), pages="1,4,6", time_budget=600)
    # Page 1 needs no model; page 4's region was predicted not to fit: it and the rest are named, not returned.
    assert [p.page for p in result.pages] == [1]
    assert result.truncated and result.next_pages == "4,6" and "Page 4 was not started" in result.note
    assert not engine.chats
    # Asked again, page 4 is the call's first page: its region is read whatever the prediction.
    engine.replies.append(Reply(pieces=(OUTLINED_TITLE,)))
    rest = await service.ocr_document(str(pdf), pages=result.next_pages, time_budget=600)
    assert [p.page for p in rest.pages] == [4, 6] and rest.pages[0].regions[0].text == OUTLINED_TITLE
    assert not rest.truncated and len(engine.chats) == 1


async def test_the_tiny_model_reads_the_regions_of_a_digital_page(settings, tiny_backend, media_dir, built):
    pdf = media_dir / "report.pdf"
    pdf.write_bytes(built.pdf)
    service = VisionService(settings.with_overrides(isolate_decoding=False), tiny_backend)
    result = await service.ocr_document(str(pdf), pages="3-5", time_budget=600)
    methods = {p.page: (p.method, len(p.regions or [])) for p in result.pages}
    assert methods == {3: ("layout", 0), 4: ("layout", 1), 5: ("layout", 1)}
    assert all(r.method == "vision" for p in result.pages for r in p.regions or [])
    assert "Samples were taken" in result.pages[1].text  # the layout text stays whatever the model wrote


async def test_a_scan_with_a_few_characters_of_text_layer_gets_them_as_a_hint(engine, remote_settings, media_dir):
    import pymupdf

    from .support.documents import scanned_pdf

    doc = pymupdf.open(stream=scanned_pdf([(300, 400)]), filetype="pdf")
    doc[0].insert_text((500, 820), "p. 7", fontsize=8, render_mode=3)  # under MIN_TEXT_CHARS: a scanned page
    pdf = media_dir / "stamped.pdf"
    pdf.write_bytes(doc.tobytes())
    async with Client(build_server(remote_settings)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "dpi": 40})
    assert not r.is_error, r.content
    assert r.structured_content["pages"][0]["method"] == "vision" and r.structured_content["note"] is None
    [message] = engine.chats[0]["body"]["messages"]
    assert message["content"][1]["text"].rstrip().endswith("p. 7")


def _chart_pdf() -> bytes:
    """A page of text with a bar chart drawn in vectors and its caption, then the picture-of-text page."""
    import pymupdf

    from bench.documents import _page_picture

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((56, 80), "The chart below shows the monthly totals of the survey returns for each region.",
                     fontsize=10)
    for i, height in enumerate([120, 80, 160, 60]):
        page.draw_rect(pymupdf.Rect(100 + i * 60, 350 - height, 140 + i * 60, 350), fill=(0.2, 0.3, 0.6), color=None)
    page.draw_line((90, 350), (360, 350))
    page.draw_line((90, 150), (90, 350))
    page.insert_text((56, 380), "Figure 1: Monthly totals by region.", fontsize=9)
    page.insert_text((56, 420), "The next paragraph continues the discussion after the figure.", fontsize=10)
    _page_picture(doc.new_page(width=595, height=842), 2)
    return doc.tobytes()


FIGURE = "A bar chart of four regions; the third bar is the tallest."


async def test_figures_are_described_in_place_with_their_captions_only_when_asked(engine, remote_settings, media_dir):
    pdf = media_dir / "chart.pdf"
    pdf.write_bytes(_chart_pdf())
    engine.replies.extend([Reply(pieces=("\n".join(PICTURED),))])
    one_at_a_time = remote_settings.with_overrides(ocr_batch=1)  # the engine answers in the order it is asked
    async with Client(build_server(one_at_a_time)) as client:
        plain = await client.call_tool("ocr_document", {"document": str(pdf), "time_budget": 600})
        assert [p["figures"] for p in plain.structured_content["pages"]] == [None, None]
        assert len(engine.chats) == 1  # the picture of text only: its text is missing, the chart is not asked for
        engine.replies.extend([Reply(pieces=(FIGURE,)), Reply(pieces=("\n".join(PICTURED),))])
        r = await client.call_tool("ocr_document", {"document": str(pdf), "figures": True, "time_budget": 600})
    assert not r.is_error, r.content
    chart, picture = r.structured_content["pages"]
    [figure] = chart["figures"]
    assert figure["caption"] == "Figure 1: Monthly totals by region." and figure["description"] == FIGURE
    x0, y0, x1, y1 = figure["bbox"]
    assert x0 <= 100 and y0 <= 190 and x1 >= 320 and y1 >= 345 and y1 < 375  # the bars and axes, not the caption
    text = chart["text"]
    quoted = f"> *Figure, described by the model:* {FIGURE}"
    assert text.index("The chart below") < text.index(quoted) < text.index("Figure 1: Monthly") < text.index("next par")
    # The picture of text is a region (its text is read), never also a figure.
    assert picture["figures"] is None and len(picture["regions"]) == 1
    figure_chat = engine.chats[1]["body"]["messages"][0]["content"][1]["text"]
    assert figure_chat.startswith("This image is a figure") and 'caption reads: "Figure 1: Monthly totals' in figure_chat
    assert len(engine.chats) == 3


async def test_figures_count_against_the_budget_like_pages(engine, remote_settings, media_dir, monkeypatch):
    from mcp_vision import ocr

    def only_the_first_batch_fits(self, wanted, first):
        self.predicted = None if first else (30.0, 1.0)
        return wanted if first else 0

    monkeypatch.setattr(ocr.PageReader, "pages_that_fit", only_the_first_batch_fits)
    pdf = media_dir / "chart.pdf"
    pdf.write_bytes(_chart_pdf())
    engine.replies.append(Reply(pieces=(FIGURE,)))
    service = VisionService(remote_settings.with_overrides(ocr_batch=1), None)
    result = await service.ocr_document(str(pdf), figures=True, time_budget=600)
    # The chart page is the call's first: its figure is described; page 2's region was predicted not to fit.
    assert [p.page for p in result.pages] == [1] and result.pages[0].figures[0].description == FIGURE
    assert result.truncated and result.next_pages == "2" and "Page 2 was not started" in result.note
    assert len(engine.chats) == 1
