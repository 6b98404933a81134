"""A page as the model wrote it, brought to the conventions of the layout path: Markdown without a code fence around
the whole page, and without the runaway repetition a small model falls into at the end of a long page (the same
line or phrase over and over until the token limit). The decode stops such a loop early where the engine runs in
this process (`RepetitionStop`, on token ids); the text is cut here for every engine, the remote one included.

MCP-free and torch-free: the token check takes plain lists of ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A loop: its unit repeated at least MIN_REPEATS times back to back at the very end, the repeats together at least
# MIN_SPAN long. Ten identical table rows at the end of a page stay; a hundred do not.
MIN_REPEATS = 10
MIN_SPAN_CHARS = 300
MAX_UNIT_CHARS = 400  # the longest repeated unit looked for (a few lines)
TAIL_CHARS = 8000  # only the end of the text is looked at
MIN_SPAN_TOKENS = 120
MAX_UNIT_TOKENS = 96
TAIL_TOKENS = 2048
CHECK_EVERY = 8  # tokens between two checks of a decode

_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\n(?P<body>.*?)(?:\n[ \t]*```\s*)?\Z", re.S)


def unfence(text: str) -> str:
    """`text` without a code fence that wraps it whole (```markdown ... ```, the closing fence optional: a page cut
    at the token limit lacks it); a fence around only part of the page (real code on the page) stays."""
    match = _FENCE.match(text)
    if match is None:
        return text
    body = match.group("body")
    if "```" in body:  # fences inside: the outer ones may be the page's own code blocks
        return text
    return body.strip("\n")


def repeated_tail(items: Sequence[object], max_unit: int) -> tuple[int, int]:
    """(unit length, repeated span) of the shortest unit that `items` end by repeating (the last copy may be cut
    short), or (0, 0) when none repeats at least MIN_REPEATS times."""
    n = len(items)
    for unit in range(1, min(max_unit, n // MIN_REPEATS) + 1):
        run = 0  # how many items from the end equal the item `unit` before them
        while run < n - unit and items[n - 1 - run] == items[n - 1 - run - unit]:
            run += 1
        span = run + unit
        if span >= MIN_REPEATS * unit:
            return unit, span
    return 0, 0


def cut_repetition(text: str) -> str:
    """`text` with a runaway repetition at its end cut to one copy of the repeated unit (units with no letter or
    digit, such as a rule of underscores or leader dots, are the page's own and stay)."""
    tail = text[-TAIL_CHARS:]
    unit, span = repeated_tail(tail, MAX_UNIT_CHARS)
    if not unit or span < MIN_SPAN_CHARS:
        return text
    start = len(text) - span
    if not any(ch.isalnum() for ch in text[start: start + unit]):
        return text
    # The text repeats with period `unit` from `start` on, so one copy ends anywhere in the next `unit` characters:
    # end it at a line break there, else at a space, so the copy kept is whole.
    window = text[start + unit - 1: start + 2 * unit - 1]
    where = window.find("\n")
    if where < 0:
        where = next((i for i, ch in enumerate(window) if ch.isspace()), 1)
    return text[: start + unit - 1 + where].rstrip()


def looping(token_ids: Sequence[int]) -> bool:
    """Whether generated `token_ids` end in a runaway loop (the token form of `cut_repetition`'s test)."""
    tail = list(token_ids[-TAIL_TOKENS:])
    unit, span = repeated_tail(tail, MAX_UNIT_TOKENS)
    return bool(unit) and span >= MIN_SPAN_TOKENS


__all__ = ["unfence", "cut_repetition", "looping", "repeated_tail", "CHECK_EVERY", "MIN_SPAN_TOKENS", "TAIL_TOKENS"]
