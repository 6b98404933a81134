"""The image formats the server reads: one list that sniffing, the decoder's allow-list, its refusals, the
describe_image description and the README all follow (tests/test_formats.py compares them).

Nothing here imports Pillow: `sniff` reads the list for every source, long before anything is decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    """One format as people name it, the Pillow decoders that read it, and how its files start."""

    name: str  # what messages and the README call it
    pillow: tuple[str, ...]  # Pillow's format ids, in the order Image.open tries them
    signature: re.Pattern[bytes]  # matched at the start of the file
    weak: bool = False  # the signature is short enough that other files (text) may start so too

    def starts(self, head: bytes) -> bool:
        return self.signature.match(head) is not None


def _sig(pattern: bytes) -> re.Pattern[bytes]:
    return re.compile(pattern, re.DOTALL)


# Formats with a well-fuzzed decoder; EPS (Ghostscript) and the exotic ones Pillow knows are not read.
# AVIF comes before HEIF: an AVIF file may carry HEIF's generic brand (mif1), which Pillow's own AVIF decoder
# reads and pillow-heif (built without an AV1 decoder) would refuse.
FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("PNG", ("PNG",), _sig(rb"\x89PNG\r\n\x1a\n")),
    # Pillow's JPEG opener also reads the multi-picture JPEG (MPO) some cameras save.
    ImageFormat("JPEG", ("JPEG",), _sig(rb"\xff\xd8\xff")),
    ImageFormat("GIF", ("GIF",), _sig(rb"GIF8[79]a")),
    ImageFormat("WebP", ("WEBP",), _sig(rb"RIFF.{4}WEBP")),
    ImageFormat("BMP", ("BMP",), _sig(rb"BM"), weak=True),
    ImageFormat("TIFF", ("TIFF",), _sig(rb"II\*\x00|MM\x00\*")),
    ImageFormat("ICO", ("ICO",), _sig(rb"\x00\x00\x01\x00"), weak=True),
    ImageFormat("PPM/PGM/PBM", ("PPM",), _sig(rb"P[1-6]"), weak=True),  # Netpbm
    ImageFormat("AVIF", ("AVIF",), _sig(rb".{4}ftypavi[fs]")),
    # Phones save HEIC (HEVC in HEIF); read through pillow-heif, registered on the first decode (images.py).
    ImageFormat("HEIF/HEIC", ("HEIF",), _sig(rb".{4}ftyp(?:hei[cxms]|hev[cxms]|mif[12]|msf1)")),
    # Scanned archives: the JP2 file format, or a bare codestream (J2K).
    ImageFormat("JPEG 2000", ("JPEG2000",), _sig(rb"\x00\x00\x00\x0cjP  \r\n\x87\n|\xff\x4f\xff\x51")),
)


def format_of(head: bytes, *, weak: bool = False) -> ImageFormat | None:
    """The format whose signature `head` starts with; formats with a weak signature only when `weak`."""
    return next((f for f in FORMATS if (weak or not f.weak) and f.starts(head)), None)


def names(formats: tuple[ImageFormat, ...] = FORMATS) -> str:
    """The formats as messages and the README list them: "PNG, JPEG, ..., JPEG 2000"."""
    return ", ".join(f.name for f in formats)


__all__ = ["FORMATS", "ImageFormat", "format_of", "names"]
