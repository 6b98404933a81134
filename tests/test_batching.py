"""Scanned pages are read by the model several at a time (MCP_VISION_OCR_BATCH): one generation for a batch
of left-padded prompts. The answers must be the ones each page gets on its own (float32, greedy). Here the
engine's batches; ocr_document's, through the service, are in test_ocr.py."""

from __future__ import annotations

from PIL import Image

from mcp_vision.backend.base import ImagePart, Turn
from mcp_vision.worker import Job

from .support.documents import page_image


def _page(image: Image.Image, tiles: int) -> list[Turn]:
    return [Turn("user", [ImagePart(image, tiles), "Read this page."])]


def test_a_batch_answers_what_each_prompt_gets_alone(tiny_backend):
    # Different sizes and tile budgets give prompts of different lengths, so rows are padded.
    conversations = [
        _page(page_image((448, 448), (200, 30, 30)), 1),
        _page(page_image((900, 500), (30, 160, 40)), 4),
        _page(page_image((300, 700), (20, 40, 220)), 2),
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
    conversations = [_page(page_image((448, 448), (200, 30, 30)), 1), _page(page_image((448, 448), (10, 10, 10)), 1)]
    results = tiny_backend.chat_batch(conversations, Job(), max_new_tokens=6, min_new_tokens=6)
    eos = tiny_backend._eos_ids()
    for r in results:
        assert len(r.output_ids) == 6 and not eos & set(r.output_ids[:-1])
        assert r.finish_reason == "length"


def test_cancelling_stops_the_whole_batch(tiny_backend):
    conversations = [_page(page_image((448, 448), (200, 30, 30)), 1), _page(page_image((448, 448), (9, 9, 9)), 1)]
    job = Job()
    seen = []

    def report(progress, total, message):
        seen.append(progress)
        if progress >= 16:
            job.stop.set()

    job._report = report
    results = tiny_backend.chat_batch(conversations, job, max_new_tokens=400, min_new_tokens=400)
    assert all(r.finish_reason == "cancelled" and r.output_tokens < 400 for r in results)


