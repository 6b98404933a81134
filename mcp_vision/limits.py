"""Every limit stated once: the tool schemas, the service's checks and the settings read them from here.

`*_CAP` values are the most a setting may be configured to; the configured value (Settings) is what a
tool call may use, and the schema an agent reads states that configured value (server.build_server).
"""

from __future__ import annotations

from typing import Literal, get_args

# Answer length.
MAX_NEW_TOKENS_CAP = 8192  # the most tokens one answer may ask for
DEFAULT_MAX_NEW_TOKENS = 512
OCR_MIN_TOKENS = 1024  # default answer room for a page read by the model (a full page of text)

# Questions.
MAX_QUESTION_CHARS = 20_000

# Images, pages and frames: the most pixels one may decode or render to (MCP_VISION_MAX_IMAGE_PIXELS).
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000

# Image detail: TILE_SIDE x TILE_SIDE tiles per image (a thumbnail tile comes on top when an image is split).
TILE_SIDE = 448  # InternVL's tile edge in pixels: the unit `max_tiles` counts in, for every family and engine
MAX_TILES_CAP = 40
DEFAULT_MAX_TILES = 12
COMPARE_TILE_BUDGET = 24  # tiles shared by the images of one comparison (256 tokens each)

# compare_images.
MIN_COMPARE_IMAGES = 2
MAX_COMPARE_IMAGES = 4

# video_qa.
MAX_FRAMES_CAP = 64
DEFAULT_MAX_FRAMES = 32
DEFAULT_NUM_FRAMES = 8

# ocr_document.
OcrMode = Literal["auto", "text_layer", "vision"]
OCR_MODES = get_args(OcrMode)
MIN_DPI = 36
MAX_DPI = 600  # the `dpi` a tool call may ask pages to be read at
DEFAULT_DPI = 150
# What the page renderer accepts from any caller (the tool's dpi, previews at 72, benchmarks): a guard against
# nonsense (infinite, huge) before the pixel limit is computed; the pixel limit binds first on any real page.
MAX_RENDER_DPI = 10_000
DEFAULT_MAX_PAGES = 50
OCR_BATCH_CAP = 16
DEFAULT_OCR_BATCH = 4
MIN_OUTPUT_CHARS = 1000
DEFAULT_MAX_OUTPUT_CHARS = 200_000
MAX_PAGE_SPEC_CHARS = 1000  # the `pages` value's length

# Sessions (per session unless said; the oldest exchanges, and their media, go first).
MAX_EXCHANGES = 64  # question/answer pairs kept
MAX_IMAGES = 48  # images, pages and frames kept
MAX_SESSION_PREVIEW_BYTES = 16 * 1024 * 1024  # previews kept (the oldest go first)
MAX_PREVIEW_TOTAL = 128 * 1024 * 1024  # previews kept over all sessions (the least recently used go first)
MAX_PREVIEW_BYTES = 600_000  # one preview; a larger one is shrunk until it fits

# Time budgets (seconds from a call's arrival; desktop clients cut calls at about 60 s).
DEFAULT_CALL_BUDGET = 50.0
MAX_TIME_BUDGET = 3600.0

# The remote engine.
REMOTE_CONCURRENCY_CAP = 256
REMOTE_RETRIES_CAP = 10

# Fair queueing (worker.py): model calls one authenticated caller may have queued or running at once.
DEFAULT_QUEUE_PER_CALLER = 3
QUEUE_PER_CALLER_CAP = 64

__all__ = [name for name in dir() if name.isupper()] + ["OcrMode"]
