"""Decode image bytes into an RGB Pillow image: allow-listed formats, a pixel limit, EXIF orientation
applied, the first frame of multi-frame files, every mode normalised to 8-bit RGB."""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputError, TooLarge, summary
from .sources import Media

if TYPE_CHECKING:
    from PIL import Image as PILImage

# Formats with a well-fuzzed decoder in Pillow. EPS (Ghostscript) and the exotic ones are not read.
_OPEN_LOCK = threading.Lock()

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM", "AVIF", "HEIF")


@dataclass(frozen=True)
class DecodedImage:
    image: PILImage.Image
    width: int
    height: int
    format: str


def decode_image(media: Media, max_pixels: int) -> DecodedImage:
    """Decode `media` or raise an InputError that names it and says what is wrong."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if media.kind == "pdf":
        raise InputError(f"{media.label} is a PDF document, not an image: use ocr_document to read it.")
    if media.kind == "video":
        raise InputError(f"{media.label} is a video, not an image: use video_qa to ask about it.")
    Image.init()
    formats = [f for f in ALLOWED_FORMATS if f in Image.OPEN]
    with warnings.catch_warnings():
        # Pillow warns between max_pixels and 2x; treat the warning like the error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _OPEN_LOCK:  # Pillow's limit is process-wide: set it only around the header parse
                previous = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = max_pixels
                try:
                    img = Image.open(io.BytesIO(media.data), formats=formats)
                finally:
                    Image.MAX_IMAGE_PIXELS = previous
            fmt = img.format or "unknown"
            width, height = img.size
            if width * height > max_pixels:
                raise Image.DecompressionBombError("too many pixels")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = to_rgb(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(
                f"{media.label} has more pixels than the {max_pixels:,} pixel limit (MCP_VISION_MAX_IMAGE_PIXELS): "
                "downscale it first."
            ) from None
        except UnidentifiedImageError:
            supported = ", ".join(f for f in ALLOWED_FORMATS if f != "MPO")
            raise InputError(f"{media.label} is not an image in a supported format ({supported}).") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"{media.label} is a corrupt or truncated image ({summary(exc, 120)}).") from None
    return DecodedImage(image=rgb, width=rgb.width, height=rgb.height, format=fmt)


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            scaled = arr / 257.0  # 16-bit to 8-bit, same brightness
        else:
            # 32-bit int or float: no fixed range. Keep 0-255 data as is; stretch anything wider.
            lo, hi = float(arr.min()), float(arr.max())
            if (lo >= 0 and hi <= 255) or hi <= lo:
                scaled = np.clip(arr, 0, 255)
            else:
                scaled = (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


__all__ = ["decode_image", "DecodedImage", "to_rgb", "ALLOWED_FORMATS"]
