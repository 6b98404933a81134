"""Hostile inputs built in memory for the hardening tests, and functions that misbehave inside a
decoder process. Kept free of pytest and MCP imports: decoder processes import this module by name
to run its functions."""

from __future__ import annotations

import io
import os
import random
import struct
import time
import zipfile
import zlib


def png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def noisy_png(size: tuple[int, int] = (96, 96)) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 60000, height: int = 60000, animated: bool = False) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels (3.6 gigapixels by default)."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    actl = _chunk(b"acTL", struct.pack(">II", 2, 0)) if animated else b""
    row = b"\x00" + b"\x00" * 3 * min(width, 1024)
    idat = _chunk(b"IDAT", zlib.compress(row * 16, 9))
    return b"\x89PNG\r\n\x1a\n" + header + actl + idat + _chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """A GIF whose logical screen is 65535 x 65535 pixels, with one 1x1 image in it."""
    screen = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return screen + image + b"\x3b"


def truncated_png() -> bytes:
    data = noisy_png()
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data is overwritten with garbage (its CRCs no longer match)."""
    data = bytearray(noisy_png())
    start = data.index(b"IDAT") + 4
    data[start + 8 : start + 400] = bytes(random.Random(3).randrange(256) for _ in range(392))
    return bytes(data)


def jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(noisy_png())).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg()
    return data[: len(data) // 3]


def corrupt_jpeg() -> bytes:
    """A JPEG whose frame header (SOF0) says the image is 0 pixels high."""
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = b"\x00\x00"
    return bytes(data)


def gif() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(noisy_png())).convert("P").save(buf, "GIF")
    return buf.getvalue()


def truncated_gif() -> bytes:
    data = gif()
    return data[:40]  # the header and part of the colour table: no image at all


def corrupt_gif() -> bytes:
    """A GIF whose first image descriptor is replaced by garbage."""
    data = bytearray(gif())
    start = data.index(b"\x2c")
    data[start : start + 12] = b"\x99" * 12
    return bytes(data[: start + 64])


def heic(image: object = None, **save: object) -> bytes:
    """A HEIC (HEVC in HEIF, what phones save) of `image` (default: the noisy PNG), written by pillow-heif."""
    import pillow_heif
    from PIL import Image

    picture = image if image is not None else Image.open(io.BytesIO(noisy_png())).convert("RGB")
    buf = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buf, quality=90, **save)
    return buf.getvalue()


def truncated_heic() -> bytes:
    data = heic()
    return data[: len(data) // 2]  # the coded picture ends early; the header still points past the end


def garbled_heic() -> bytes:
    """A HEIC whose metadata (item locations, properties) is overwritten with garbage."""
    data = bytearray(heic())
    start = data.index(b"meta") + 20
    data[start : start + 100] = random.Random(3).randbytes(100)
    return bytes(data)


def heic_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A small HEIC whose image-size property (ispe) claims `width` x `height` pixels."""
    data = bytearray(heic())
    size = data.index(b"ispe") + 8  # after the box type and its version and flags
    data[size : size + 8] = struct.pack(">II", width, height)
    return bytes(data)


def truncated_jp2() -> bytes:
    """A JPEG 2000 (the JP2 file format scanners and archives write) cut in half."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(noisy_png())).convert("RGB").save(buf, "JPEG2000")
    data = buf.getvalue()
    return data[: len(data) // 2]


def pdf(pages: int = 3) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page()
        page.insert_text((72, 100), f"Page {number} says hello to the hardening tests.", fontsize=12)
    return doc.tobytes()


def fuzzed_pdf(seed: int, flips: int = 40) -> bytes:
    """A valid PDF with `flips` random bytes changed after its header."""
    data = bytearray(pdf())
    rng = random.Random(seed)
    for _ in range(flips):
        data[rng.randrange(16, len(data))] = rng.randrange(256)
    return bytes(data)


def zip_named_pdf() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
        archive.writestr("OEBPS/content.xhtml", "<html><body>not a pdf</body></html>")
    return buf.getvalue()


def mp4(seconds: int = 2, fps: int = 10) -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 10 % 256, 80, 160), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def truncated_mp4() -> bytes:
    data = mp4()
    return data[: len(data) // 2]  # the index (moov) is written last: it is gone


def random_bytes(size: int = 4096) -> bytes:
    return random.Random(11).randbytes(size)


MALFORMED = {
    "truncated.png": truncated_png,
    "corrupt.png": corrupt_png,
    "truncated.jpg": truncated_jpeg,
    "corrupt.jpg": corrupt_jpeg,
    "truncated.gif": truncated_gif,
    "corrupt.gif": corrupt_gif,
    "bomb.png": png_bomb,
    "bomb-animated.png": lambda: png_bomb(animated=True),
    "bomb.gif": gif_bomb,
    "truncated.heic": truncated_heic,
    "garbled.heic": garbled_heic,
    "bomb.heic": heic_bomb,
    "truncated.jp2": truncated_jp2,
    "archive.pdf": zip_named_pdf,
    "truncated.mp4": truncated_mp4,
    "random.bin": random_bytes,
}


# ------------------------------------------------------------------ run inside a decoder process


def abort_decoder(*args: object, **kwargs: object) -> None:
    """A native crash, as a decoder bug would cause."""
    os.abort()


def exhaust_memory(*args: object, **kwargs: object) -> bytes:
    """Ask for far more memory than any decode may use."""
    return bytes(64 * 1024**3)


def hang(*args: object, **kwargs: object) -> None:
    """A decoder stuck in a loop."""
    while True:
        time.sleep(0.05)


def whoami(*args: object, **kwargs: object) -> tuple[int, bool]:
    """The process a function runs in, and whether torch was ever imported there."""
    import sys

    return os.getpid(), "torch" in sys.modules


def media_tool_calls(source: str, first: str | None = None) -> list[tuple[str, dict]]:
    """Every tool that reads media, called with `source` (compare_images: after `first`, default itself)."""
    return [
        ("describe_image", {"image": source}),
        ("locate", {"image": source}),
        ("ocr_document", {"document": source}),
        ("compare_images", {"images": [first or source, source]}),
        ("video_qa", {"video": source}),
    ]
