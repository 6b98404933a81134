"""Decode image bytes into an RGB Pillow image: allow-listed formats, a pixel limit, EXIF orientation
applied, the first frame of multi-frame files, every mode normalised to 8-bit RGB."""

from __future__ import annotations

import functools
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InputError, TooLarge, summary
from .formats import FORMATS, ImageFormat, format_of, names
from .sources import Media

if TYPE_CHECKING:
    from PIL import Image as PILImage

_OPEN_LOCK = threading.Lock()


@functools.cache
def readable() -> tuple[ImageFormat, ...]:
    """The formats of `FORMATS` this process can decode, after adding the openers Pillow lacks (HEIF, through
    pillow-heif). Done on the first decode, never at import: start-up and `tools/list` do not pay for it."""
    from PIL import Image

    try:
        import pillow_heif
    except ImportError:  # an install without it: HEIF is then refused, and messages do not name it
        pass
    else:
        # Only the primary picture is read: no thumbnails, depth maps or auxiliary images decoded for nothing.
        pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    Image.init()
    return tuple(f for f in FORMATS if any(p in Image.OPEN for p in f.pillow))


class Area(Protocol):
    """A part of an image in its original pixels (results.Region, which inputs/ does not import)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class DecodedImage:
    image: PILImage.Image
    width: int
    height: int
    format: str


def decode_image(media: Media, max_pixels: int, frame: int = 0) -> DecodedImage:
    """Decode `media` (its `frame`, 0-based, of a multi-page file; the first by default) or raise an
    InputError that names it and says what is wrong."""
    with _decoding(media, max_pixels):
        return decode_frame(_open(media, max_pixels), media, max_pixels, frame)


async def decode_isolated(media: Media, max_pixels: int, *, isolate: bool) -> DecodedImage:
    """`decode_image` in a decoder process (or here, when isolation is off)."""
    from .sandbox import run_isolated

    return await run_isolated(decode_image, media, max_pixels, what=media.label, isolate=isolate)


def crop(decoded: DecodedImage, region: Area | None) -> tuple[PILImage.Image, tuple[int, int, int, int]]:
    """The part of a decoded image to read: (image, (left, top, width, height) in original pixels); the whole
    image without a region. A region not inside the image is one InputError (Region itself refuses an empty
    one or one starting before the image)."""
    width, height = decoded.width, decoded.height
    if region is None:
        return decoded.image, (0, 0, width, height)
    if region.x + region.width > width or region.y + region.height > height:
        shown = f"{{x: {region.x}, y: {region.y}, width: {region.width}, height: {region.height}}}"
        raise InputError(
            f"region {shown} falls outside the {width}x{height} image: keep x + width <= {width} "
            f"and y + height <= {height} (pixels of the original image, after EXIF orientation)."
        )
    box = (region.x, region.y, region.x + region.width, region.y + region.height)
    return decoded.image.crop(box), (region.x, region.y, region.width, region.height)


def _open(media: Media, max_pixels: int) -> PILImage.Image:
    """Parse the header of an allow-listed format under the pixel limit (nothing decoded yet)."""
    from PIL import Image

    if media.kind == "pdf":
        raise InputError(f"{media.label} is a PDF document, not an image: use ocr_document to read it.")
    if media.kind == "video":
        raise InputError(f"{media.label} is a video, not an image: use video_qa to ask about it.")
    formats = [p for f in readable() for p in f.pillow if p in Image.OPEN]
    with _OPEN_LOCK:  # Pillow's limit is process-wide: set it only around the header parse
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            return Image.open(io.BytesIO(media.data), formats=formats)
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def decode_frame(img: PILImage.Image, media: Media, max_pixels: int, frame: int) -> DecodedImage:
    """Frame `frame` (0-based) of an opened image as 8-bit RGB, EXIF orientation applied; call inside
    `_decoding` so failures become one InputError."""
    from PIL import Image, ImageOps

    fmt = img.format or "unknown"
    if frame or getattr(img, "n_frames", 1) > 1:
        img.seek(frame)
    width, height = img.size
    if width * height > max_pixels:
        raise Image.DecompressionBombError("too many pixels")
    img.load()
    oriented = ImageOps.exif_transpose(img) or img
    rgb = to_rgb(oriented)
    return DecodedImage(image=rgb, width=rgb.width, height=rgb.height, format=fmt)


@contextmanager
def _decoding(media: Media, max_pixels: int) -> Iterator[None]:
    """Pillow's failures while decoding `media` as one InputError that says what is wrong."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns between max_pixels and 2x; treat the warning like the error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(
                f"{media.label} has more pixels than the {max_pixels:,} pixel limit (MCP_VISION_MAX_IMAGE_PIXELS): "
                "downscale it first."
            ) from None
        except UnidentifiedImageError:
            raise _unidentified(media) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"{media.label} is a corrupt or truncated image ({summary(exc, 120)}).") from None
        except RuntimeError as exc:  # libheif's word for a coding it was built without (and other refusals)
            raise InputError(
                f"{media.label} could not be decoded ({summary(exc, 120)}): re-save it as {names(readable())}."
            ) from None


def _unidentified(media: Media) -> InputError:
    """No decoder took `media`: a file that starts like a format read is damaged; anything else is unsupported."""
    readable_now = readable()
    started = format_of(media.data[:64])
    if started is not None and started in readable_now:
        return InputError(
            f"{media.label} has the signature of {started.name} but its header cannot be read: the file is truncated "
            "or damaged, so re-save it or pass another file."
        )
    return InputError(f"{media.label} is not an image in a supported format ({names(readable_now)}).")


# ------------------------------------------------------------------ multi-page images (TIFF scans and faxes)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_HELD = "image-pages"


def is_multipage_candidate(media: Media) -> bool:
    """TIFF is the format whose extra frames are pages (a GIF's are animation)."""
    return media.kind == "image" and media.data.startswith(_TIFF_MAGIC)


def open_held_pages(media: Media, max_pixels: int) -> int:
    """In a decoder process of a lease: open `media`, keep it open, and return its page count."""
    from .sandbox import hold

    with _decoding(media, max_pixels):
        img = _open(media, max_pixels)
        count = int(getattr(img, "n_frames", 1))
    hold(_HELD, img)  # closed when the lease ends
    hold(_HELD + ":label", media.label)
    return count


def held_page(number: int, max_pixels: int) -> DecodedImage:
    """Page `number` (1-based) of the image `open_held_pages` opened in this process."""
    from .sandbox import held

    img = held(_HELD)
    media = Media(b"", held(_HELD + ":label"), "image")
    with _decoding(media, max_pixels):
        return decode_frame(img, media, max_pixels, number - 1)


class ImagePages:
    """The pages of a multi-page image (a TIFF scan), read one at a time for one tool call; the same reading
    interface as `pdf.PdfPages` (no page has a text layer). Isolated, the file stays open in one leased
    decoder process; otherwise it is opened here."""

    def __init__(self, media: Media, max_pixels: int, isolate: bool) -> None:
        self.media, self.max_pixels, self.isolate = media, max_pixels, isolate
        self.page_count = 0
        self._lease: Any = None  # a DecoderLease holding the file when isolated (reopened there after a crash)
        self._img: Any = None

    async def open(self) -> ImagePages:
        from .sandbox import decoder_pool, run_isolated

        if self.isolate:
            self._lease = decoder_pool().lease()
            self.page_count = await self._lease.open(open_held_pages, self.media, self.max_pixels, what=self.media.label)
        else:
            def opened() -> tuple[Any, int]:
                with _decoding(self.media, self.max_pixels):
                    img = _open(self.media, self.max_pixels)
                    return img, int(getattr(img, "n_frames", 1))

            self._img, self.page_count = await run_isolated(opened, what=self.media.label, isolate=False)
        return self

    async def page(self, number: int) -> DecodedImage:
        from .sandbox import run_isolated

        if not 1 <= number <= self.page_count:
            raise InputError(f"Page {number} is out of range: {self.media.label} has {self.page_count} pages.")
        if self._lease is None:
            def decode() -> DecodedImage:
                with _decoding(self.media, self.max_pixels):
                    return decode_frame(self._img, self.media, self.max_pixels, number - 1)

            return await run_isolated(decode, what=self.media.label, isolate=False)
        return await self._lease.run(held_page, number, self.max_pixels, what=self.media.label)

    async def has_text_layer(self, number: int) -> bool:
        return False

    async def text_layer(self, number: int) -> str:
        return ""

    async def render(self, number: int, dpi: float, max_pixels: int) -> PILImage.Image:
        """The page as scanned (an image page has its own resolution: `dpi` does not apply)."""
        return (await self.page(number)).image

    async def aclose(self) -> None:
        import anyio

        if self._lease is not None:
            await anyio.to_thread.run_sync(self._lease.close)
        if self._img is not None:
            self._img.close()


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


__all__ = ["Area", "DecodedImage", "ImagePages", "crop", "decode_frame", "decode_image", "decode_isolated", "is_multipage_candidate", "readable", "to_rgb"]
