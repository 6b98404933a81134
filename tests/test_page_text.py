"""A page as the model wrote it, brought to the layout path's conventions (page_text.py): no whole-page code fence, a
runaway repetition loop cut (in the text for every engine; stopped in the decode where the engine runs here)."""

from __future__ import annotations

import pytest
from PIL import Image

from mcp_vision import page_text
from mcp_vision.backend.base import ImagePart, Turn
from mcp_vision.page_text import cut_repetition, looping, unfence
from mcp_vision.worker import Job


def test_a_fence_around_the_whole_page_comes_off_and_code_on_the_page_stays():
    assert unfence("```markdown\n# Title\n\n| a | b |\n|---|---|\n```") == "# Title\n\n| a | b |\n|---|---|"
    assert unfence("```\nplain page\n```\n") == "plain page"
    assert unfence("```md\n# Cut at the token limit, no closing fence") == "# Cut at the token limit, no closing fence"
    page = "# Install\n\n```sh\npip install x\n```\n\nThen run it."
    assert unfence(page) == page  # the page's own code block
    two = "```\nfirst block\n```\n\ntext\n\n```\nsecond block\n```"
    assert unfence(two) == two


def test_a_runaway_loop_at_the_end_is_cut_to_one_copy():
    start = "# Minutes\n\nThe committee met on Monday.\n"
    looped = start + "The meeting was adjourned.\n" * 40 + "The meeting was adj"
    assert cut_repetition(looped) == start + "The meeting was adjourned."
    words = start + "thank you " * 80
    assert cut_repetition(words) == start + "thank you"


def test_repeats_that_belong_to_the_page_stay():
    rows = "| Item | Qty |\n|---|---|\n" + "| bolt | 4 |\n" * 9 + "| nut | 2 |"
    assert cut_repetition(rows) == rows  # nine identical rows, then a different one: no loop at the end
    few = "Intro.\n" + "Same line again.\n" * 8
    assert cut_repetition(few) == few  # under ten repeats
    rule = "Signature: " + "_" * 600
    assert cut_repetition(rule) == rule  # a unit with no letter or digit is the page's own


def test_token_loops_are_told_apart_from_varied_decodes():
    assert looping([5, 6, 7] + [11, 12, 13, 14] * 40)
    assert not looping(list(range(400)))
    assert not looping([1, 2, 3, 4] * 11)  # ten repeats but a short span: not yet a loop worth stopping


def test_the_decode_stops_a_looping_row_and_keeps_the_others(tiny_backend, monkeypatch):
    # The tiny random model does not loop on its own: the test makes the looping check fire once a row holds 130
    # generated tokens, so the decode must stop that row at the next check (136, checks every 8 tokens).
    conversations = [
        [Turn("user", [ImagePart(Image.new("RGB", (64, 64), color), 1), "Read the page."])]
        for color in ("white", "red")
    ]
    free = tiny_backend.chat_batch(conversations, Job(), max_new_tokens=300)
    assert free[0].output_tokens == 300 and free[0].finish_reason == "length"  # the white page runs to the limit
    assert free[1].output_tokens < 120 and free[1].finish_reason == "stop"  # the red one ends by itself early
    monkeypatch.setattr(page_text, "looping", lambda ids: len(ids) >= 130)
    stopped = tiny_backend.chat_batch(conversations, Job(), max_new_tokens=300)
    assert stopped[0].output_tokens == 136 and stopped[0].finish_reason == "stop"
    assert stopped[0].output_ids == free[0].output_ids[:136]  # the same greedy tokens, no padding after them
    assert stopped[1].output_ids == free[1].output_ids


@pytest.mark.parametrize("wrapped", ["```markdown\nScanned words\n```", "Scanned words\n" + "Scanned words\n" * 40])
def test_model_pages_follow_the_conventions_on_every_engine(wrapped):
    from mcp_vision.ocr import page_text as ocr_page_text

    assert ocr_page_text(wrapped) == "Scanned words"
