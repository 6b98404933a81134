"""decode_image on images built with Pillow in memory: modes, orientation, frames, limits, non-images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mcp_vision.errors import InputError
from mcp_vision.inputs.images import decode_image
from mcp_vision.inputs.sources import Media, sniff

BIG = 10_000_000


def _media(data: bytes, label: str = "'test.img'") -> Media:
    return Media(data, label, sniff(data))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _near(actual, expected, tol=3) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def test_rgb_png_roundtrip():
    out = decode_image(_media(_encode(Image.new("RGB", (7, 5), (10, 200, 30)), "PNG")), BIG)
    assert (out.width, out.height, out.format) == (7, 5, "PNG")
    assert out.image.mode == "RGB"
    assert out.image.getpixel((3, 2)) == (10, 200, 30)


def test_palette_with_transparency_composites_over_white():
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, 1 blue
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    out = decode_image(_media(_encode(img, "PNG", transparency=0)), BIG)
    assert out.image.mode == "RGB"
    assert out.image.getpixel((0, 0)) == (255, 255, 255)
    assert out.image.getpixel((1, 0)) == (0, 0, 255)


def test_la_transparent_pixel_becomes_white_opaque_grey_kept():
    img = Image.new("LA", (2, 1))
    img.putpixel((0, 0), (0, 0))
    img.putpixel((1, 0), (80, 255))
    out = decode_image(_media(_encode(img, "PNG")), BIG)
    assert out.image.getpixel((0, 0)) == (255, 255, 255)
    assert out.image.getpixel((1, 0)) == (80, 80, 80)


def test_rgba_transparent_pixel_becomes_white():
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (0, 128, 0, 255))
    img.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black -> mid grey
    out = decode_image(_media(_encode(img, "PNG")), BIG)
    assert out.image.getpixel((0, 0)) == (255, 255, 255)
    assert out.image.getpixel((1, 0)) == (0, 128, 0)
    assert _near(out.image.getpixel((2, 0)), (127, 127, 127), tol=2)


def test_cmyk_jpeg_becomes_rgb():
    data = _encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "JPEG", quality=95)
    out = decode_image(_media(data), BIG)
    assert out.image.mode == "RGB"
    assert out.format == "JPEG"
    assert _near(out.image.getpixel((4, 4)), (0, 255, 255), tol=8)


def test_16bit_png_is_scaled_not_clipped():
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    data = _encode(Image.fromarray(gradient), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really 16-bit on disk
    out = decode_image(_media(data), BIG)
    assert out.image.mode == "RGB"
    row = [out.image.getpixel((x, 0))[0] for x in range(256)]
    assert row[0] <= 1
    assert row[-1] >= 254
    assert 120 <= row[128] <= 136  # clipping would make everything past 255/65535 white
    assert row == sorted(row)


def test_uniform_white_16bit_png_stays_white():
    data = _encode(Image.fromarray(np.full((4, 4), 65535, np.uint16)), "PNG")
    out = decode_image(_media(data), BIG)
    assert out.image.getpixel((0, 0)) == (255, 255, 255)


def test_greyscale_l_becomes_rgb():
    out = decode_image(_media(_encode(Image.new("L", (4, 4), 77), "PNG")), BIG)
    assert out.image.mode == "RGB"
    assert out.image.getpixel((0, 0)) == (77, 77, 77)


def test_exif_orientation_6_is_applied():
    img = Image.new("RGB", (40, 20), "white")
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(_media(_encode(img, "JPEG", exif=exif, quality=95)), BIG)
    assert (out.width, out.height) == (20, 40)
    assert out.image.size == (20, 40)
    # after a clockwise turn the left strip is at the top
    assert _near(out.image.getpixel((10, 2)), (255, 0, 0), tol=40)
    assert _near(out.image.getpixel((10, 37)), (255, 255, 255), tol=40)


def test_multiframe_gif_returns_first_frame():
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(_media(data), BIG)
    assert out.format == "GIF"
    assert _near(out.image.getpixel((3, 3)), (255, 0, 0))


def test_over_twice_the_pixel_limit_is_refused():
    data = _encode(Image.new("RGB", (30, 30)), "PNG")  # 900 pixels
    with pytest.raises(InputError, match="MCP_VISION_MAX_IMAGE_PIXELS") as info:
        decode_image(_media(data), 100)
    assert "'test.img'" in str(info.value)


def test_between_limit_and_twice_the_limit_is_refused():
    data = _encode(Image.new("RGB", (10, 15)), "PNG")  # 150 pixels: Pillow only warns here
    with pytest.raises(InputError, match="MCP_VISION_MAX_IMAGE_PIXELS"):
        decode_image(_media(data), 100)


def test_exactly_the_pixel_limit_is_decoded():
    out = decode_image(_media(_encode(Image.new("RGB", (10, 10)), "PNG")), 100)
    assert out.image.size == (10, 10)


def test_pixel_limit_does_not_leak_into_pillow_global():
    before = Image.MAX_IMAGE_PIXELS
    decode_image(_media(_encode(Image.new("RGB", (10, 10)), "PNG")), 100)
    with pytest.raises(InputError):
        decode_image(_media(_encode(Image.new("RGB", (30, 30)), "PNG")), 100)
    assert Image.MAX_IMAGE_PIXELS == before


def test_truncated_png_is_corrupt():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), "PNG")
    with pytest.raises(InputError, match="corrupt"):
        decode_image(_media(data[: len(data) // 2]), BIG)


def test_text_is_not_an_image():
    with pytest.raises(InputError, match="not an image"):
        decode_image(_media(b"just some text\n" * 10), BIG)


def test_pdf_points_to_ocr_document():
    with pytest.raises(InputError, match="ocr_document"):
        decode_image(_media(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"), BIG)


def test_mp4_points_to_video_qa():
    with pytest.raises(InputError, match="video_qa"):
        decode_image(_media(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41" + b"\x00" * 32), BIG)


def test_eps_is_not_decoded():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
    with pytest.raises(InputError, match="not an image"):
        decode_image(_media(eps), BIG)
