"""ocr_document's behaviour: text layers and the model per page, modes, page ranges, images and multi-page
TIFFs as documents, the output cap, batches of scanned pages, and the time budget's partial reads with the
exact `pages` value for the rest. The in-memory client or the service, on the tiny InternVL."""

from __future__ import annotations

import threading
import time

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.ocr import page_ranges
from mcp_vision.server import build_server
from mcp_vision.service import VisionService

from .support.documents import SENTENCES, multipage_tiff, scanned_pdf, sentences_pdf, text_layer
from .support.wrapping import Wrapping

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------------ through the client


async def test_ocr_born_digital_pages_return_their_text_layer_as_markdown(settings, tiny_backend, media_dir):
    pdf = sentences_pdf(media_dir / "report.pdf")
    progress: list[tuple] = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "1-2"}, progress_callback=on_progress)
        exact = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "1", "mode": "text_layer"})
    assert not r.is_error, r.content
    data = r.structured_content
    assert data["page_count"] == 3
    assert [p["page"] for p in data["pages"]] == [1, 2]
    assert all(p["method"] == "layout" for p in data["pages"])
    assert data["pages"][0]["text"] == SENTENCES[0] and SENTENCES[1] in data["pages"][1]["text"]
    assert data["note"] is None
    assert SENTENCES[0] in r.content[0].text  # the leading text block holds the answer
    # mode='text_layer' keeps returning the text layer verbatim, unarranged.
    assert exact.structured_content["pages"][0] == {
        "page": 1, "method": "text_layer", "text": text_layer(pdf, 1), "header": None, "footer": None, "regions": None, "figures": None,
    }
    assert len(progress) >= 2
    values = [p for p, _, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values), "progress must strictly increase"


async def test_ocr_scanned_page_is_read_by_the_model(settings, tiny_backend, media_dir):
    pdf = sentences_pdf(media_dir / "mixed.pdf", scanned_page=True)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "3-4", "dpi": 72, "max_new_tokens": 16})
        sid = r.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "What is on page 4?"})
    assert not r.is_error, r.content
    methods = {p["page"]: p["method"] for p in r.structured_content["pages"]}
    assert methods == {3: "layout", 4: "vision"}
    assert not follow.is_error
    # The rendered page is in the session: the follow-up prompt carries its image tokens.
    assert follow.structured_content["usage"]["image_tokens"] > 0


async def test_ocr_modes_can_be_forced(settings, tiny_backend, media_dir):
    pdf = sentences_pdf(media_dir / "r.pdf")
    async with Client(build_server(settings, tiny_backend)) as client:
        vision = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "2", "mode": "vision", "dpi": 72, "max_new_tokens": 16})
        layer = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "2", "mode": "text_layer"})
    assert vision.structured_content["pages"][0]["method"] == "vision"
    assert layer.structured_content["pages"][0]["method"] == "text_layer"


async def test_ocr_accepts_an_image_as_the_document(settings, tiny_backend, media_dir):
    page = media_dir / "page.png"
    Image.new("RGB", (600, 800), "white").save(page)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(page), "max_new_tokens": 16})
    assert not r.is_error, r.content
    assert r.structured_content["page_count"] == 1
    assert r.structured_content["pages"][0]["method"] == "vision"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"pages": "9"}, "3 pages"),
        ({"pages": "2-1"}, "3 pages"),
        ({"pages": "x"}, "3 pages"),
    ],
)
async def test_ocr_bad_page_ranges_state_the_page_count(settings, tiny_backend, media_dir, args, expected):
    pdf = sentences_pdf(media_dir / "p.pdf")
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), **args})
    assert r.is_error and expected in r.content[0].text


async def test_ocr_refuses_encrypted_and_fake_pdfs(settings, tiny_backend, media_dir):
    import zipfile

    locked = sentences_pdf(media_dir / "locked.pdf", encrypt=True)
    fake = media_dir / "fake.pdf"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("hello.txt", "not a pdf")
    async with Client(build_server(settings, tiny_backend)) as client:
        r1 = await client.call_tool("ocr_document", {"document": str(locked)})
        r2 = await client.call_tool("ocr_document", {"document": str(fake)})
        r3 = await client.call_tool("ocr_document", {"document": str(sentences_pdf(media_dir / "ok.pdf")), "pages": "1"})
    assert r1.is_error and "password" in r1.content[0].text
    assert r2.is_error
    assert not r3.is_error


async def test_ocr_output_cap_truncates_with_a_note(tiny_model_dir, tiny_backend, media_dir, settings):
    pdf = sentences_pdf(media_dir / "long.pdf")
    capped = settings.with_overrides(max_output_chars=1000)
    import pymupdf

    doc = pymupdf.open(pdf)
    for _ in range(3):
        page = doc.new_page()
        page.insert_textbox(page.rect + (36, 36, -36, -36), "lorem ipsum dolor sit amet " * 60, fontsize=9)
    doc.save(media_dir / "longer.pdf")
    async with Client(build_server(capped, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(media_dir / "longer.pdf"), "mode": "text_layer"})
    data = r.structured_content
    assert data["truncated"] is True and "pages=" in data["note"]
    assert sum(len(p["text"]) for p in data["pages"]) <= 1000


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_ocr_reads_every_page_of_a_multipage_tiff(settings, tiny_backend, media_dir, isolate):
    tiff = multipage_tiff(media_dir / "fax.tiff", 3)
    server = build_server(settings.with_overrides(isolate_decoding=isolate), tiny_backend)
    async with Client(server) as client:
        every = await client.call_tool("ocr_document", {"document": str(tiff), "max_new_tokens": 4})
        second = await client.call_tool("ocr_document", {"document": str(tiff), "pages": "2", "max_new_tokens": 4})
        beyond = await client.call_tool("ocr_document", {"document": str(tiff), "pages": "4"})
        layer = await client.call_tool("ocr_document", {"document": str(tiff), "mode": "text_layer"})
    assert not every.is_error, every.content[0].text
    data = every.structured_content
    assert data["page_count"] == 3 and [p["page"] for p in data["pages"]] == [1, 2, 3]
    assert all(p["method"] == "vision" for p in data["pages"])
    assert not second.is_error and [p["page"] for p in second.structured_content["pages"]] == [2]
    assert beyond.is_error and "3 pages" in beyond.content[0].text
    assert layer.is_error and "no text layer" in layer.content[0].text


async def test_forcing_the_text_layer_of_a_scanned_page_says_it_has_none(settings, tiny_backend, media_dir):
    pdf = sentences_pdf(media_dir / "mixed.pdf", scanned_page=True)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "3-4", "mode": "text_layer"})
    assert not r.is_error, r.content[0].text
    assert r.structured_content["pages"][1]["text"].strip() == ""
    assert "Page 4 has no real text layer" in r.structured_content["note"] and "mode='auto'" in r.structured_content["note"]


# ------------------------------------------------------------------ batches of scanned pages


class CountingBackend(Wrapping):
    """The tiny backend, counting how the service calls it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.lock = threading.Lock()


    def chat_batch(self, conversations, job, *, max_new_tokens):
        with self.lock:
            self.batches.append(len(conversations))
        return self.inner.chat_batch(conversations, job, max_new_tokens=max_new_tokens)


@pytest.mark.anyio
async def test_ocr_reads_scanned_pages_in_batches_with_the_same_text(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(400, 560), None, (500, 700), (300, 420), (420, 600), None, (350, 500)]))
    answers = {}
    for batch in (1, 3):
        backend = CountingBackend(tiny_backend)
        service = VisionService(settings.with_overrides(ocr_batch=batch), backend)
        progress: list[float] = []

        async def on_progress(value, total, message):
            progress.append(value)

        result = await service.ocr_document(str(pdf), dpi=40, progress=on_progress, max_new_tokens=6)
        assert [p.page for p in result.pages] == [1, 2, 3, 4, 5, 6, 7]
        assert [p.method for p in result.pages] == ["vision", "layout", "vision", "vision", "vision", "layout", "vision"]
        assert "Typed page 2" in result.pages[1].text
        assert progress == sorted(progress) and progress[-1] == 7
        answers[batch] = ([p.text for p in result.pages], backend.batches)
    assert answers[3][0] == answers[1][0]
    assert answers[1][1] == [1, 1, 1, 1, 1]
    assert answers[3][1] == [3, 2]  # pages 1, 3, 4 together; then 5 and 7


@pytest.mark.anyio
async def test_ocr_batches_stop_at_the_output_cap(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(400, 560), (500, 700), (300, 420), (420, 600)]))
    full = await VisionService(settings.with_overrides(ocr_batch=4), tiny_backend).ocr_document(
        str(pdf), dpi=40, max_new_tokens=12
    )
    cap = len(full.pages[0].text) + 2  # the cap falls inside page 2, in the middle of the batch
    service = VisionService(settings.with_overrides(ocr_batch=4, max_output_chars=cap), tiny_backend)
    capped = await service.ocr_document(str(pdf), dpi=40, max_new_tokens=12)
    assert [p.page for p in capped.pages] == [1, 2]
    assert capped.pages[0].text == full.pages[0].text and capped.pages[1].text == full.pages[1].text[:2]
    assert capped.truncated and 'pages="2-4"' in capped.note
    session = service.sessions.get(capped.session_id)
    assert len(session.turns[0].images) == 2  # only the pages returned join the session


# ------------------------------------------------------------------ time budgets


class SlowPages(Wrapping):
    """The tiny backend, each batch of pages taking `seconds` more (as a real model's would)."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds, self.batches = inner, seconds, []


    def chat_batch(self, conversations, job, *, max_new_tokens, min_new_tokens=None):
        time.sleep(self.seconds)
        self.batches.append(len(conversations))
        return self.inner.chat_batch(conversations, job, max_new_tokens=max_new_tokens)


def test_page_ranges_are_exact():
    assert page_ranges([3, 4, 5, 7, 9, 10]) == "3-5,7,9-10"
    assert page_ranges([2]) == "2"


async def test_ocr_returns_the_pages_that_fit_and_the_exact_rest(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(300, 420)] * 4 + [None] + [(300, 420)] * 3))
    backend = SlowPages(tiny_backend, 1.0)  # 8 pages: 8 s or more without a budget
    service = VisionService(settings.with_overrides(ocr_batch=1), backend)
    await service.ocr_document(str(pdf), dpi=40, max_new_tokens=1, pages="5")  # decoder processes started
    started = time.monotonic()
    result = await service.ocr_document(str(pdf), dpi=40, max_new_tokens=4, time_budget=2.5)
    took = time.monotonic() - started
    assert 1 <= len(result.pages) < 8 and result.truncated
    read = [p.page for p in result.pages]
    assert read == list(range(1, len(read) + 1))
    assert result.next_pages == page_ranges(list(range(len(read) + 1, 9)))
    assert "time budget" in result.note and f'pages="{result.next_pages}"' in result.note
    assert took < 6.0, took  # near the budget, far from the 8 s the whole document takes
    again = await service.ocr_document(str(pdf), dpi=40, max_new_tokens=4, pages=result.next_pages, time_budget=60)
    assert [p.page for p in again.pages] == list(range(len(read) + 1, 9)) and not again.truncated


async def test_the_first_page_is_read_even_when_nothing_seems_to_fit(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(300, 420)] * 3))
    backend = SlowPages(tiny_backend, 0.0)
    service = VisionService(settings.with_overrides(ocr_batch=4), backend)
    service.speeds.vision_tile.value = 100.0  # a guess that says no page fits
    result = await service.ocr_document(str(pdf), dpi=40, max_new_tokens=4, time_budget=5)
    assert result.pages[0].page == 1 and result.pages[0].method == "vision"
    assert backend.batches[0] == 1  # one page first; then the measured speed decides


async def test_a_page_not_started_for_its_predicted_time_says_so(settings, tiny_backend, media_dir):
    """A page skipped because it was predicted not to fit is worded as a prediction (its seconds and the seconds
    left), not as time spent."""
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(300, 420)] * 3))
    backend = SlowPages(tiny_backend, 3.0)
    service = VisionService(settings.with_overrides(ocr_batch=1), backend)
    await service.ocr_document(str(pdf), dpi=40, max_new_tokens=1, pages="3", time_budget=60)  # warm
    result = await service.ocr_document(str(pdf), dpi=40, max_new_tokens=2, time_budget=5)
    assert [p.page for p in result.pages] == [1] and result.next_pages == "2-3"
    assert result.note.startswith("Page 2 was not started: it was predicted to need about 3 s"), result.note
    assert "of the 5 s time budget were left" in result.note and 'pages="2-3"' in result.note


async def test_progress_counts_the_pages_asked_for(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(300, 420)] * 3))
    service = VisionService(settings.with_overrides(ocr_batch=2), tiny_backend)
    messages: list[str] = []

    async def on_progress(_value, _total, message):
        messages.append(message or "")

    await service.ocr_document(str(pdf), dpi=40, max_new_tokens=2, pages="2", progress=on_progress)
    await service.ocr_document(str(pdf), dpi=40, max_new_tokens=2, pages="1-3", progress=on_progress)
    assert not [m for m in messages if " of 1" in m or " of 3" in m], messages
    assert any(m.startswith("page 2 (1/1)") for m in messages), messages
    assert any(m.startswith("pages 1, 2 together (1-2/3)") for m in messages), messages


# ------------------------------------------------------------------ the layout step (text-layer pages as Markdown)


async def test_layout_pages_return_running_header_and_footer_apart(settings, tiny_backend, media_dir):
    from bench.documents import HEADER, SALES, build

    pdf = media_dir / "paper.pdf"
    pdf.write_bytes(build().pdf)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "2"})
    assert not r.is_error, r.content[0].text
    [page] = r.structured_content["pages"]
    assert page["method"] == "layout"
    assert HEADER in page["header"] and page["footer"] == "Page 2 of 6"
    assert HEADER not in page["text"] and "Page 2 of 6" not in page["text"]
    assert "<th>Region</th>" in page["text"] and all(cell in page["text"] for cell in SALES[3])


async def test_layout_pages_are_planned_against_their_measured_pace(settings, tiny_backend, media_dir, monkeypatch):
    from mcp_vision import ocr

    pdf = sentences_pdf(media_dir / "report.pdf")
    service = VisionService(settings, tiny_backend)
    monkeypatch.setattr(ocr.LAYOUT_PACE, "seconds_per_page", 30.0)  # as slow as a page could be
    result = await service.ocr_document(str(pdf), time_budget=20)
    # The first page is read whatever the pace says; the next would overrun the budget, so the rest is named.
    assert [p.page for p in result.pages] == [1] and result.pages[0].method == "layout"
    assert result.truncated and result.next_pages == "2-3" and 'pages="2-3"' in result.note
    monkeypatch.setattr(ocr.LAYOUT_PACE, "seconds_per_page", 0.01)
    rest = await service.ocr_document(str(pdf), pages=result.next_pages, time_budget=20)
    assert [p.page for p in rest.pages] == [2, 3] and not rest.truncated
    assert ocr.LAYOUT_PACE.seconds_per_page > 0.01  # it learned the speed measured on that call


async def test_a_page_whose_layout_fails_returns_its_flat_text_with_a_note(settings, tiny_backend, media_dir, monkeypatch):
    from mcp_vision.inputs import page_markdown

    real = page_markdown.layout_markdown

    def failing_on_page_2(doc, numbers, regions=None):
        if 2 in numbers:
            raise RuntimeError("layout model exploded")
        return real(doc, numbers, regions)

    monkeypatch.setattr(page_markdown, "layout_markdown", failing_on_page_2)  # in-process decoding reaches it
    pdf = sentences_pdf(media_dir / "report.pdf")
    service = VisionService(settings.with_overrides(isolate_decoding=False), tiny_backend)
    result = await service.ocr_document(str(pdf))
    assert [(p.page, p.method) for p in result.pages] == [(1, "layout"), (2, "text_layer"), (3, "layout")]
    assert result.pages[1].text == text_layer(pdf, 2)
    assert not result.truncated and "The layout of page 2 could not be analysed" in result.note


async def test_a_layout_step_over_its_time_limit_is_killed_and_the_flat_text_returned(settings, tiny_backend, media_dir,
                                                                                      monkeypatch):
    from mcp_vision import ocr

    monkeypatch.setattr(ocr, "LAYOUT_TIMEOUT_PER_PAGE", 0.001)  # the decoder process is killed mid-layout
    pdf = sentences_pdf(media_dir / "report.pdf")
    service = VisionService(settings, tiny_backend)  # isolated decoding: the limit is the decoder's
    result = await service.ocr_document(str(pdf), pages="1-2")
    assert [(p.page, p.method) for p in result.pages] == [(1, "text_layer"), (2, "text_layer")]
    assert result.pages[0].text == text_layer(pdf, 1)
    assert "The layout of pages 1-2 could not be analysed" in result.note and "took longer than" in result.note
    again = await service.ocr_document(str(pdf), pages="3", mode="text_layer")  # the server keeps serving
    assert SENTENCES[2] in again.pages[0].text
