"""Deterministic pixel comparison of two images: a similarity score and the boxes that changed,
found on a coarse grid of cells with pure numpy and Python (no scipy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

# A cell counts as changed when at least this many of its pixels changed (lone pixels are noise).
_MIN_CELL_PIXELS = 2

# Gaussian blur radius (working pixels) applied to both images when their sizes differ.
_SOFTEN_RADIUS = 1.5


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels: left, top, width and height."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class PixelDiff:
    """How alike two images are (1.0 is identical) and where `other` changed, in its own pixels."""

    similarity: float
    regions: list[Box]


def compare_pixels(
    base: PILImage.Image,
    other: PILImage.Image,
    *,
    work_side: int = 512,
    threshold: int = 24,
    min_area_fraction: float = 0.0005,
    max_regions: int = 16,
) -> PixelDiff:
    """Compare `other` with `base` at one working size; regions are boxes in `other`'s original pixels."""
    import numpy as np

    side = min(work_side, max(base.size), max(other.size))  # never upscale: resampling noise
    size = _work_size(base.width, base.height, side)
    # Different sizes mean different resampling: soften both so thin edges are not reported as changes.
    soften = _SOFTEN_RADIUS if base.size != other.size else 0.0
    a = _pixels(base, size, soften)
    b = _pixels(other, size, soften)
    diff = np.abs(a - b).max(axis=2)  # per pixel, the largest channel difference
    similarity = round(1.0 - float(diff.mean()) / 255.0, 4)
    mask = diff > threshold
    if not mask.any():
        return PixelDiff(similarity=similarity, regions=[])
    boxes = _regions(mask, min_area_fraction, max_regions)
    sx, sy = other.width / size[0], other.height / size[1]
    regions = [_scale(box, sx, sy, other.width, other.height) for box in boxes]
    return PixelDiff(similarity=similarity, regions=regions)


def _work_size(width: int, height: int, work_side: int) -> tuple[int, int]:
    """Base's aspect ratio with the longer side `work_side`."""
    side = max(1, int(work_side))
    if width >= height:
        return side, max(1, round(side * height / max(width, 1)))
    return max(1, round(side * width / max(height, 1))), side


def _pixels(image: PILImage.Image, size: tuple[int, int], soften: float) -> np.ndarray:
    import numpy as np
    from PIL import Image, ImageFilter

    from .images import to_rgb

    rgb = to_rgb(image)
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    if soften:
        rgb = rgb.filter(ImageFilter.GaussianBlur(soften))
    return np.asarray(rgb, dtype=np.int16)


def _regions(mask: np.ndarray, min_area_fraction: float, max_regions: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1, end exclusive) around the changed areas of `mask`, largest first."""
    import numpy as np

    height, width = mask.shape
    cell = max(4, max(height, width) // 64)
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.zeros((rows * cell, cols * cell), dtype=np.int32)
    padded[:height, :width] = mask
    counts = padded.reshape(rows, cell, cols, cell).sum(axis=(1, 3))
    changed = counts >= _MIN_CELL_PIXELS
    min_pixels = max(1.0, min_area_fraction * height * width)

    found: list[tuple[int, tuple[int, int, int, int]]] = []
    seen = np.zeros_like(changed)
    for r0, c0 in zip(*np.nonzero(changed), strict=True):  # row-major: deterministic order
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        stack = [(int(r0), int(c0))]
        top, left, bottom, right, pixels = int(r0), int(c0), int(r0), int(c0), 0
        while stack:
            r, c = stack.pop()
            pixels += int(counts[r, c])
            top, bottom, left, right = min(top, r), max(bottom, r), min(left, c), max(right, c)
            for nr in (r - 1, r, r + 1):
                for nc in (c - 1, c, c + 1):
                    if 0 <= nr < rows and 0 <= nc < cols and changed[nr, nc] and not seen[nr, nc]:
                        seen[nr, nc] = True
                        stack.append((nr, nc))
        if pixels < min_pixels:
            continue
        # Tight box of changed pixels within the component's cells and one cell around them, so
        # edge pixels in cells below the cell threshold are kept; then one pixel of margin.
        y0, y1 = max(0, (top - 1) * cell), min(height, (bottom + 2) * cell)
        x0, x1 = max(0, (left - 1) * cell), min(width, (right + 2) * cell)
        window = mask[y0:y1, x0:x1]
        ys, xs = np.nonzero(window.any(axis=1))[0], np.nonzero(window.any(axis=0))[0]
        box = (
            max(0, x0 + int(xs[0]) - 1),
            max(0, y0 + int(ys[0]) - 1),
            min(width, x0 + int(xs[-1]) + 2),
            min(height, y0 + int(ys[-1]) + 2),
        )
        found.append((pixels, box))

    merged = _merge(found)
    merged.sort(key=lambda item: (-item[0], item[1][1], item[1][0]))
    return [box for _, box in merged[: max(0, max_regions)]]


def _merge(found: list[tuple[int, tuple[int, int, int, int]]]) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Union boxes that overlap or touch until none do, adding up their changed pixels."""
    import numpy as np

    if len(found) < 2:
        return list(found)
    pixels = np.array([p for p, _ in found], dtype=np.int64)
    boxes = np.array([b for _, b in found], dtype=np.int64)  # x0, y0, x1, y1
    alive = np.ones(len(found), dtype=bool)
    for i in range(len(found)):
        # Grow box i over every live box it touches until it touches none; one pass settles all.
        while alive[i]:
            x0, y0, x1, y1 = boxes[i]
            touching = alive & (boxes[:, 0] <= x1) & (x0 <= boxes[:, 2]) & (boxes[:, 1] <= y1) & (y0 <= boxes[:, 3])
            touching[i] = False
            if not touching.any():
                break
            group = boxes[touching]
            boxes[i] = (
                min(x0, group[:, 0].min()),
                min(y0, group[:, 1].min()),
                max(x1, group[:, 2].max()),
                max(y1, group[:, 3].max()),
            )
            pixels[i] += pixels[touching].sum()
            alive[touching] = False
    merged: list[tuple[int, tuple[int, int, int, int]]] = []
    for i in np.nonzero(alive)[0]:
        x0, y0, x1, y1 = (int(v) for v in boxes[i])
        merged.append((int(pixels[i]), (x0, y0, x1, y1)))
    return merged


def _scale(box: tuple[int, int, int, int], sx: float, sy: float, width: int, height: int) -> Box:
    """A working-size box in `other`'s pixels, rounded outwards and clamped to the image."""
    import math

    x0 = min(max(0, math.floor(box[0] * sx)), max(width - 1, 0))
    y0 = min(max(0, math.floor(box[1] * sy)), max(height - 1, 0))
    x1 = max(min(width, math.ceil(box[2] * sx)), x0 + 1)
    y1 = max(min(height, math.ceil(box[3] * sy)), y0 + 1)
    return Box(x=x0, y=y0, width=x1 - x0, height=y1 - y0)


__all__ = ["Box", "PixelDiff", "compare_pixels"]
