"""annotate: outlines land on the box edges, the long side is capped, the byte budget is kept."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mcp_vision.inputs.annotate import annotate

WHITE = (255, 255, 255)


def _decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(png)).convert("RGB")


def test_box_outline_is_drawn_and_the_rest_stays_white() -> None:
    image = Image.new("RGB", (451, 300), WHITE)
    out = _decode(annotate(image, [("the cat", 45, 60, 181, 180)]))
    assert out.size == (451, 300)
    # The outline: left, right, top and bottom edges of the rectangle.
    for point in [(45, 150), (225, 150), (135, 60), (135, 239), (46, 100), (224, 200)]:
        assert out.getpixel(point) != WHITE, point
    # Well inside and well outside the box.
    for point in [(135, 150), (100, 200), (350, 150), (10, 280), (440, 10)]:
        assert out.getpixel(point) == WHITE, point
    assert image.getpixel((45, 150)) == WHITE  # drawn on a copy


def test_label_tag_is_above_the_box_or_inside_at_the_top() -> None:
    image = Image.new("RGB", (451, 300), WHITE)
    above = np.asarray(_decode(annotate(image, [("cat", 100, 100, 100, 100)])))
    assert (above[80:99, 100:130] != 255).any()  # a tag just above the box
    top = np.asarray(_decode(annotate(image, [("cat", 100, 0, 100, 100)])))
    assert (top[3:15, 103:130] != 255).any()  # no room above: inside the box


def test_distinct_labels_get_distinct_colours_and_same_label_the_same() -> None:
    image = Image.new("RGB", (451, 300), WHITE)
    boxes = [("a", 10, 150, 50, 50), ("b", 100, 150, 50, 50), ("a", 200, 150, 50, 50)]
    out = _decode(annotate(image, boxes))
    colour_a, colour_b, colour_a2 = (out.getpixel((x, 190)) for x in (10, 100, 200))
    assert colour_a != colour_b
    assert colour_a == colour_a2
    assert annotate(image, boxes) == annotate(image, boxes)  # deterministic


def test_large_image_comes_back_with_long_side_1024() -> None:
    image = Image.new("RGB", (3000, 2000), WHITE)
    out = _decode(annotate(image, [("x", 1000, 500, 800, 600)]))
    assert max(out.size) == 1024
    assert out.size == (1024, 683)


def test_small_image_is_never_upscaled_and_no_boxes_is_the_plain_image() -> None:
    image = Image.new("RGB", (120, 80), (10, 20, 30))
    out = _decode(annotate(image, []))
    assert out.size == (120, 80)
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_small_max_bytes_forces_further_downscale() -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8), "RGB")
    png = annotate(noise, [("x", 100, 100, 200, 200)], max_bytes=200_000)
    assert len(png) <= 200_000
    assert max(_decode(png).size) < 800


def test_boxes_off_the_image_or_empty_are_skipped() -> None:
    image = Image.new("RGB", (100, 100), WHITE)
    out = _decode(annotate(image, [("off", 200, 200, 10, 10), ("flat", 10, 10, 0, 50)]))
    assert np.array_equal(np.asarray(out), np.asarray(image))
