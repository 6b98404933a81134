"""compare_pixels and describe_regions on patterned images drawn with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mcp_vision.model_prompts import describe_regions
from mcp_vision.inputs.diff import Box, PixelDiff, compare_pixels

GREEN = (20, 200, 20)


def _base(width: int = 640, height: int = 480) -> Image.Image:
    """A gradient with a grid of thin lines, some shapes and text: detail that resampling can blur."""
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    pixels = 200 + 40 * x * np.array([1.0, 0.5, 0.0]) + 15 * y * np.array([0.0, 0.5, 1.0])
    img = Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for i in range(0, width, 40):
        draw.line([(i, 0), (i, height)], fill=(30, 30, 120), width=2)
    for j in range(0, height, 40):
        draw.line([(0, j), (width, j)], fill=(120, 30, 30), width=2)
    draw.ellipse((420, 60, 560, 160), fill=(200, 60, 60))
    draw.text((40, 400), "Settings - Save - Cancel", fill=(0, 0, 0))
    return img


def _with_rect(img: Image.Image, box: tuple[int, int, int, int], fill=GREEN) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).rectangle(box, fill=fill)
    return out


def _contains(region: Box, box: tuple[int, int, int, int], slack: int = 16) -> bool:
    """`region` covers the drawn rectangle (inclusive corners) and is at most `slack` px larger a side."""
    x0, y0, x1, y1 = box[0], box[1], box[2] + 1, box[3] + 1
    rx1, ry1 = region.x + region.width, region.y + region.height
    covers = region.x <= x0 and region.y <= y0 and rx1 >= x1 and ry1 >= y1
    tight = x0 - region.x <= slack and y0 - region.y <= slack and rx1 - x1 <= slack and ry1 - y1 <= slack
    return covers and tight


def test_identical_images():
    base = _base()
    result = compare_pixels(base, base.copy())
    assert result == PixelDiff(similarity=1.0, regions=[])
    assert describe_regions(result, 2) == "Image-2 vs Image-1: similarity 1.0; no pixel differences."


def test_one_rectangle_gives_one_tight_region():
    base = _base()
    rect = (200, 150, 300, 230)
    result = compare_pixels(base, _with_rect(base, rect))
    assert len(result.regions) == 1
    assert _contains(result.regions[0], rect)
    assert 0.9 < result.similarity < 1.0


def test_two_separate_rectangles_give_two_regions():
    base = _base()
    first, second = (200, 150, 300, 230), (480, 330, 560, 420)
    other = _with_rect(_with_rect(base, first), second, fill=(250, 250, 0))
    result = compare_pixels(base, other)
    assert len(result.regions) == 2
    assert any(_contains(r, first) for r in result.regions)
    assert any(_contains(r, second) for r in result.regions)
    line = describe_regions(result, 3)
    assert line.startswith("Image-3 vs Image-1: similarity 0.")
    assert "changed regions (x, y, width, height): (" in line and line.endswith(").")
    assert line.count("(") == 3  # the legend and two boxes


@pytest.mark.parametrize("resample", [Image.Resampling.BILINEAR, Image.Resampling.LANCZOS])
def test_regions_are_in_the_other_images_coordinates(resample):
    base = _base()
    rect = (400, 300, 600, 460)  # (200, 150, 300, 230) at twice the size
    other = _with_rect(base.resize((1280, 960), resample), rect)
    result = compare_pixels(base, other)
    assert len(result.regions) == 1
    assert _contains(result.regions[0], rect)


def test_smaller_other_image_uses_its_coordinates():
    base = _base()
    rect = (100, 75, 150, 115)
    result = compare_pixels(base, _with_rect(base.resize((320, 240), Image.Resampling.BILINEAR), rect))
    assert len(result.regions) == 1
    assert _contains(result.regions[0], rect, slack=8)
    assert result.regions[0].x + result.regions[0].width <= 320


def test_tiny_noise_is_ignored():
    base = _base()
    other = base.copy()
    pixels = other.load()
    rng = np.random.default_rng(7)
    for x, y in rng.integers(0, 480, size=(60, 2)):
        pixels[int(x), int(y)] = (0, 0, 0)
    ImageDraw.Draw(other).rectangle((100, 100, 102, 102), fill=(0, 0, 0))  # 9 px, below min area
    result = compare_pixels(base, other)
    assert result.regions == []
    assert 0.99 < result.similarity < 1.0
    assert "only scattered pixel differences" in describe_regions(result, 2)


def test_small_change_above_min_area_is_found():
    base = _base()
    rect = (300, 300, 315, 315)
    result = compare_pixels(base, _with_rect(base, rect, fill=(0, 0, 0)))
    assert len(result.regions) == 1
    assert _contains(result.regions[0], rect, slack=4)


def test_deterministic():
    base = _base()
    other = _with_rect(_with_rect(base, (200, 150, 300, 230)), (40, 300, 90, 350), fill=(0, 0, 255))
    assert compare_pixels(base, other) == compare_pixels(base.copy(), other.copy())


def test_max_regions_keeps_the_largest():
    base = Image.new("RGB", (400, 400), (255, 255, 255))
    other = base.copy()
    draw = ImageDraw.Draw(other)
    sizes = [10, 14, 18, 22, 26, 30]
    for i, size in enumerate(sizes):
        x = 20 + i * 60
        draw.rectangle((x, 20, x + size - 1, 20 + size - 1), fill=(0, 0, 0))
    result = compare_pixels(base, other, max_regions=3)
    assert len(result.regions) == 3
    assert [r.x for r in result.regions] == [19 + i * 60 for i in (5, 4, 3)]  # largest first


def test_overlapping_changes_merge_into_one_box():
    base = _base()
    other = _with_rect(_with_rect(base, (200, 150, 300, 230)), (290, 220, 380, 300), fill=(0, 0, 255))
    result = compare_pixels(base, other)
    assert len(result.regions) == 1
    assert _contains(result.regions[0], (200, 150, 380, 300))


def test_modes_and_transparency_are_normalised():
    base = Image.new("RGBA", (200, 100), (255, 255, 255, 0))  # transparent composites to white
    other = Image.new("L", (200, 100), 255)
    assert compare_pixels(base, other) == PixelDiff(similarity=1.0, regions=[])


def test_whole_image_change():
    base = Image.new("RGB", (300, 200), (0, 0, 0))
    result = compare_pixels(base, Image.new("RGB", (300, 200), (255, 255, 255)))
    assert result.similarity == 0.0
    assert result.regions == [Box(0, 0, 300, 200)]
