"""Draw labelled boxes on a copy of an image and return it as a PNG that fits a size budget.

Pillow is imported where used, so importing this module stays cheap.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageDraw as PILImageDraw

# Distinct, saturated colours that stand out on photos and screenshots; none is near white.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (240, 50, 230),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
    (128, 128, 0),
    (70, 70, 70),
)

_OUTLINE = 3  # pixels of the final image
_TAG_PAD = 2
_SHRINK = 0.75  # each further downscale when the PNG is over max_bytes
_MIN_SIDE = 64  # below this the picture is useless; return it even if over budget


def annotate(
    image: PILImage.Image,
    boxes: list[tuple[str, int, int, int, int]],
    *,
    max_side: int = 1024,
    max_bytes: int = 1_500_000,
) -> bytes:
    """PNG of `image` with each (label, x, y, width, height) box drawn, long side at most max_side."""
    source = image.convert("RGB")  # a copy: the caller's image is never drawn on
    scale = min(1.0, max_side / max(source.size))  # never upscale
    while True:
        png = _render(source, boxes, scale)
        side = max(source.size) * scale
        if len(png) <= max_bytes or side * _SHRINK < _MIN_SIDE:
            return png
        scale *= _SHRINK


def _render(source: PILImage.Image, boxes: list[tuple[str, int, int, int, int]], scale: float) -> bytes:
    # Resize first and draw at the final size, so outlines and tags keep their width in pixels.
    from PIL import Image, ImageDraw

    if scale < 1.0:
        size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
        canvas = source.resize(size, Image.Resampling.LANCZOS)
    else:
        canvas = source.copy()
    fx, fy = canvas.width / source.width, canvas.height / source.height
    draw = ImageDraw.Draw(canvas)
    font = _font(max(canvas.size))
    colours: dict[str, tuple[int, int, int]] = {}
    for index, (label, x, y, width, height) in enumerate(boxes, start=1):
        on_image = x < source.width and y < source.height and x + width > 0 and y + height > 0
        if width <= 0 or height <= 0 or not on_image:
            continue
        colour = colours.setdefault(label, _PALETTE[len(colours) % len(_PALETTE)])
        left = max(0, min(canvas.width - 1, round(x * fx)))
        top = max(0, min(canvas.height - 1, round(y * fy)))
        right = max(left, min(canvas.width - 1, round((x + width) * fx) - 1))
        bottom = max(top, min(canvas.height - 1, round((y + height) * fy) - 1))
        draw.rectangle((left, top, right, bottom), outline=colour, width=_OUTLINE)
        _tag(draw, canvas.size, f"{index} {label}".strip(), colour, font, left, top)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _tag(
    draw: PILImageDraw.ImageDraw,
    size: tuple[int, int],
    text: str,
    colour: tuple[int, int, int],
    font: object,
    left: int,
    top: int,
) -> None:
    """A filled label tag above the box, or just inside it when the box touches the top."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    tag_w, tag_h = x1 - x0 + 2 * _TAG_PAD, y1 - y0 + 2 * _TAG_PAD
    tx = max(0, min(left, size[0] - tag_w))
    ty = top - tag_h if top - tag_h >= 0 else top
    draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=colour)
    # Dark text on light colours, white on dark ones.
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
    draw.text((tx + _TAG_PAD - x0, ty + _TAG_PAD - y0), text, fill=ink, font=font)


def _font(long_side: int) -> object:
    # Pillow's built-in font: nothing from the network or system fonts that may be missing.
    from PIL import ImageFont

    size = max(12, min(20, round(long_side / 64)))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # older Pillow, or no FreeType: the bitmap font
        return ImageFont.load_default()
