"""Previews: small JPEGs of the media a session holds, for a viewer to show (never for the model).

A preview is named by a session-scoped URI built from the session's unguessable id, so reading one
needs that id and reaches only what the session already holds. MCP-free; Pillow is imported where used.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from .limits import MAX_PREVIEW_BYTES

if TYPE_CHECKING:
    from PIL import Image as PILImage

SCHEME = "mcp-vision"
TEMPLATE = SCHEME + "://session/{session_id}/preview/{key}"
MIME_TYPE = "image/jpeg"

IMAGE_SIDE = 1024  # longest side of an image's preview (describe_image, locate, compare_images)
PAGE_SIDE = 900  # of a document page's
FRAME_SIDE = 384  # of a video frame's
PAGE_DPI = 72  # a text-layer page (never rendered for the model) is rendered at this for its preview

_QUALITY = 85
_SHRINK = 0.75
_MIN_SIDE = 48


def uri(session_id: str, key: str) -> str:
    return TEMPLATE.format(session_id=session_id, key=key)


def encode(image: PILImage.Image, max_side: int, max_bytes: int = MAX_PREVIEW_BYTES) -> bytes:
    """A JPEG of `image`, longest side at most `max_side` (never upscaled) and at most `max_bytes`."""
    from PIL import Image

    source = image.convert("RGB") if image.mode != "RGB" else image
    scale = min(1.0, max_side / max(source.size))
    while True:
        size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
        shown = source.resize(size, Image.Resampling.LANCZOS) if size != source.size else source
        buffer = io.BytesIO()
        shown.save(buffer, format="JPEG", quality=_QUALITY, optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_bytes or max(size) * _SHRINK < _MIN_SIDE:
            return data
        scale *= _SHRINK


__all__ = ["TEMPLATE", "MIME_TYPE", "uri", "encode", "IMAGE_SIDE", "PAGE_SIDE", "FRAME_SIDE", "PAGE_DPI"]
