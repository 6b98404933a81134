"""Bounding boxes from a grounding answer: parse each model family's box syntax, then map to pixels.

Pure standard library: no torch, no Pillow, no MCP, so it is cheap to import and to test.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

FAMILIES = ("internvl", "qwen2_vl", "qwen2_5_vl")

# The tokens each family writes its boxes with. Checkpoints mark some of them special (Qwen2-VL's tokenizer
# flags <|box_start|> and the rest "special": true), so an answer decoded with skip_special_tokens loses them
# and its boxes with them: the local engines decode keeping these (local_engine.decode_answer).
MARKUP = {
    "internvl": ("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>"),
    "qwen2_vl": ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>"),
}
MARKUP["qwen2_5_vl"] = MARKUP["qwen2_vl"]

# InternVL and Qwen2-VL write coordinates on a 0..1000 grid of the image they were shown.
_GRID = 1000.0

# Qwen2.5-VL writes pixels of the resized image and tends to overshoot its edges by a little.
_PIXEL_TOLERANCE = 0.02

# Float products such as 0.8 * 300 = 240.00000000000003 must not round outwards by a whole pixel.
_EPS = 1e-9

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_INTERNVL_TAGS = re.compile(r"<ref>(.*?)</ref>|<box>(.*?)</box>", re.DOTALL)
_INTERNVL_GROUP = re.compile(r"\[([^\[\]]*)\]")
_QWEN2_BOX = re.compile(
    r"(?:<\|object_ref_start\|>(.*?)<\|object_ref_end\|>\s*)?<\|box_start\|>(.*?)<\|box_end\|>",
    re.DOTALL,
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)


@dataclass(frozen=True)
class Found:
    """One box as the model wrote it, normalised to 0..1 of the image it was shown."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class Parsed:
    """The well-formed boxes of an answer, and how many others it wrote."""

    found: list[Found]
    dropped: int  # malformed, degenerate (zero area) or out of range


@dataclass(frozen=True)
class PixelBox:
    """A box in pixels of the original image: left, top, width and height."""

    label: str
    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return (self.x + self.width // 2, self.y + self.height // 2)


def grounding_family(model_type_or_name: str) -> str:
    """The box syntax a model writes, from its transformers model_type or served name."""
    name = model_type_or_name.lower()
    if "qwen2.5" in name or "qwen2_5" in name:
        return "qwen2_5_vl"
    if "qwen2-vl" in name or "qwen2_vl" in name:
        return "qwen2_vl"
    # InternVL, and anything unknown: InternVL is this server's default model family.
    return "internvl"


def parse_boxes(answer: str, family: str, shown_size: tuple[int, int] | None = None) -> Parsed:
    """The boxes in `answer`; shown_size (width, height) is required for qwen2_5_vl's pixel coordinates."""
    if family == "internvl":
        return _collect(_internvl_boxes(answer), None)
    if family == "qwen2_vl":
        return _collect(_qwen2_boxes(answer), None)
    if family == "qwen2_5_vl":
        if shown_size is None:
            raise ValueError("qwen2_5_vl boxes are in pixels of the shown image: shown_size is required")
        return _collect(_qwen2_5_boxes(answer), shown_size)
    raise ValueError(f"unknown grounding family {family!r}; known: {', '.join(FAMILIES)}")


def to_pixels(
    found: Found, shown: tuple[int, int, int, int], image_size: tuple[int, int]
) -> PixelBox | None:
    """Map a box on the shown part (left, top, width, height) to original pixels; None if it clips away."""
    left, top, width, height = shown
    image_width, image_height = image_size
    # Round outwards so the pixel box covers everything the model marked.
    x0 = max(0, math.floor(left + found.x0 * width + _EPS))
    y0 = max(0, math.floor(top + found.y0 * height + _EPS))
    x1 = min(image_width, math.ceil(left + found.x1 * width - _EPS))
    y1 = min(image_height, math.ceil(top + found.y1 * height - _EPS))
    if x1 <= x0 or y1 <= y0:
        return None
    return PixelBox(found.label, x0, y0, x1 - x0, y1 - y0)


# A raw box: its label and its four coordinates, or None where the model wrote something unusable.
_Raw = tuple[str, list[float] | None]


def _collect(raws: list[_Raw], shown_size: tuple[int, int] | None) -> Parsed:
    found: list[Found] = []
    dropped = 0
    for label, numbers in raws:
        box = _normalise(label, numbers, shown_size)
        if box is None:
            dropped += 1
        else:
            found.append(box)
    return Parsed(found=found, dropped=dropped)


def _normalise(label: str, numbers: list[float] | None, shown_size: tuple[int, int] | None) -> Found | None:
    if numbers is None or len(numbers) != 4:
        return None
    xa, ya, xb, yb = numbers
    if shown_size is None:
        if any(v < 0 or v > _GRID for v in numbers):
            return None
        width = height = _GRID
    else:
        width, height = float(shown_size[0]), float(shown_size[1])
        if width <= 0 or height <= 0:
            return None
        slack_x, slack_y = width * _PIXEL_TOLERANCE, height * _PIXEL_TOLERANCE
        if any(v < -slack_x or v > width + slack_x for v in (xa, xb)):
            return None
        if any(v < -slack_y or v > height + slack_y for v in (ya, yb)):
            return None
        # Within the tolerance: an overshoot is the edge.
        xa, xb = (min(max(v, 0.0), width) for v in (xa, xb))
        ya, yb = (min(max(v, 0.0), height) for v in (ya, yb))
    x0, x1 = sorted((xa, xb))
    y0, y1 = sorted((ya, yb))
    if x1 <= x0 or y1 <= y0:
        return None
    return Found(label.strip(), x0 / width, y0 / height, x1 / width, y1 / height)


def _numbers(text: str) -> list[float] | None:
    """Comma-separated numbers, or None if any item is not a plain number."""
    items = [item.strip() for item in text.split(",")]
    if not all(_NUMBER.fullmatch(item) for item in items):
        return None
    return [float(item) for item in items]


def _internvl_boxes(answer: str) -> list[_Raw]:
    raws: list[_Raw] = []
    label = ""  # a <box> without its own <ref> belongs to the previous one
    for match in _INTERNVL_TAGS.finditer(answer):
        ref, box = match.groups()
        if ref is not None:
            label = ref
            continue
        groups = _INTERNVL_GROUP.findall(box)
        if not groups:
            # Brackets left out: read the whole content as one box.
            groups = [box]
        raws.extend((label, _numbers(group)) for group in groups)
    return raws


def _qwen2_boxes(answer: str) -> list[_Raw]:
    raws: list[_Raw] = []
    for match in _QWEN2_BOX.finditer(answer):
        ref, box = match.groups()
        raws.append((ref or "", _numbers(box.replace("(", " ").replace(")", " "))))
    return raws


def _qwen2_5_boxes(answer: str) -> list[_Raw]:
    fenced = _FENCE.findall(answer)
    raws: list[_Raw] = []
    for text in fenced or [answer]:
        raws.extend(_json_boxes(text))
    return raws


def _json_boxes(text: str) -> list[_Raw]:
    try:
        data = json.loads(text)
    except ValueError:
        # Text around the JSON, or a list cut short by max_new_tokens: read the objects one by one.
        return [raw for chunk in _JSON_OBJECT.findall(text) for raw in _json_object(chunk)]
    items = data if isinstance(data, list) else [data]
    return [_json_item(item) for item in items if isinstance(item, dict) and "bbox_2d" in item]


def _json_object(chunk: str) -> list[_Raw]:
    try:
        item = json.loads(chunk)
    except ValueError:
        # Only a broken object that meant to be a box counts as dropped.
        return [("", None)] if "bbox_2d" in chunk else []
    if isinstance(item, dict) and "bbox_2d" in item:
        return [_json_item(item)]
    return []


def _json_item(item: dict[str, object]) -> _Raw:
    label = item.get("label")
    box = item.get("bbox_2d")
    text = label if isinstance(label, str) else ""
    if not isinstance(box, list) or not all(_is_number(v) for v in box):
        return (text, None)
    return (text, [float(v) for v in box])


def _is_number(value: object) -> bool:
    # bool is an int subclass; NaN and infinity are not coordinates.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
