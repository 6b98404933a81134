"""Scanned pages are read by the model several at a time (MCP_VISION_OCR_BATCH): one generation for a batch
of left-padded prompts. The answers must be the ones each page gets on its own (float32, greedy)."""

from __future__ import annotations

import io
import threading

import pymupdf
import pytest
from PIL import Image

from mcp_vision.backend.base import ImagePart, Turn
from mcp_vision.service import VisionService
from mcp_vision.worker import Job

from .support.wrapping import Wrapping


def _image(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 37):  # some structure, so pages differ beyond their colour
        for y in range(0, size[1], 3):
            image.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    return image


def _page(image: Image.Image, tiles: int) -> list[Turn]:
    return [Turn("user", [ImagePart(image, tiles), "Read this page."])]


def test_a_batch_answers_what_each_prompt_gets_alone(tiny_backend):
    # Different sizes and tile budgets give prompts of different lengths, so rows are padded.
    conversations = [
        _page(_image((448, 448), (200, 30, 30)), 1),
        _page(_image((900, 500), (30, 160, 40)), 4),
        _page(_image((300, 700), (20, 40, 220)), 2),
    ]
    alone = [tiny_backend.chat(c, Job(), max_new_tokens=8) for c in conversations]
    together = tiny_backend.chat_batch(conversations, Job(), max_new_tokens=8)
    assert [r.output_ids for r in together] == [r.output_ids for r in alone]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.prompt_tokens for r in together] == [r.prompt_tokens for r in alone]
    assert [r.tiles for r in together] == [r.tiles for r in alone]
    assert len({r.prompt_tokens for r in alone}) > 1  # the rows really were padded
    assert all(r.batch_size == 3 for r in together) and all(r.batch_size == 1 for r in alone)


def test_a_row_that_ends_early_is_cut_at_its_end(tiny_backend):
    # min_new_tokens forces the others to run on; a row that says its end-of-text token stops there.
    conversations = [_page(_image((448, 448), (200, 30, 30)), 1), _page(_image((448, 448), (10, 10, 10)), 1)]
    results = tiny_backend.chat_batch(conversations, Job(), max_new_tokens=6, min_new_tokens=6)
    eos = tiny_backend._eos_ids()
    for r in results:
        assert len(r.output_ids) == 6 and not eos & set(r.output_ids[:-1])
        assert r.finish_reason == "length"


def test_cancelling_stops_the_whole_batch(tiny_backend):
    conversations = [_page(_image((448, 448), (200, 30, 30)), 1), _page(_image((448, 448), (9, 9, 9)), 1)]
    job = Job()
    seen = []

    def report(progress, total, message):
        seen.append(progress)
        if progress >= 16:
            job.stop.set()

    job._report = report
    results = tiny_backend.chat_batch(conversations, job, max_new_tokens=400, min_new_tokens=400)
    assert all(r.finish_reason == "cancelled" and r.output_tokens < 400 for r in results)


def _scanned_pdf(sizes: list[tuple[int, int] | None]) -> bytes:
    """A page per entry: an image of that size filling the page (a scan), or None for a page of text."""
    doc = pymupdf.open()
    colors = [(200, 30, 30), (30, 160, 40), (20, 40, 220), (200, 200, 40), (90, 20, 120), (10, 150, 150)]
    for index, size in enumerate(sizes):
        page = doc.new_page(width=595, height=842)
        if size is None:
            page.insert_text((72, 72), f"Typed page {index + 1} has a real text layer.", fontsize=12)
        else:
            buf = io.BytesIO()
            _image(size, colors[index % len(colors)]).save(buf, "PNG")
            page.insert_image(page.rect, stream=buf.getvalue(), keep_proportion=False)
    return doc.tobytes()


class CountingBackend(Wrapping):
    """The tiny backend, counting how the service calls it."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def chat_batch(self, conversations, job, *, max_new_tokens):
        with self.lock:
            self.batches.append(len(conversations))
        return self.inner.chat_batch(conversations, job, max_new_tokens=max_new_tokens)


@pytest.mark.anyio
async def test_ocr_reads_scanned_pages_in_batches_with_the_same_text(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(_scanned_pdf([(400, 560), None, (500, 700), (300, 420), (420, 600), None, (350, 500)]))
    answers = {}
    for batch in (1, 3):
        backend = CountingBackend(tiny_backend)
        service = VisionService(settings.with_overrides(ocr_batch=batch), backend)
        progress: list[float] = []

        async def on_progress(value, total, message):
            progress.append(value)

        result = await service.ocr_document(str(pdf), dpi=40, progress=on_progress, max_new_tokens=6)
        assert [p.page for p in result.pages] == [1, 2, 3, 4, 5, 6, 7]
        assert [p.method for p in result.pages] == ["vision", "text_layer", "vision", "vision", "vision", "text_layer", "vision"]
        assert "Typed page 2" in result.pages[1].text
        assert progress == sorted(progress) and progress[-1] == 7
        answers[batch] = ([p.text for p in result.pages], backend.batches)
    assert answers[3][0] == answers[1][0]
    assert answers[1][1] == [1, 1, 1, 1, 1]
    assert answers[3][1] == [3, 2]  # pages 1, 3, 4 together; then 5 and 7


@pytest.mark.anyio
async def test_ocr_batches_stop_at_the_output_cap(settings, tiny_backend, media_dir):
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(_scanned_pdf([(400, 560), (500, 700), (300, 420), (420, 600)]))
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
