"""Turns as chat-completions messages: text items and images as lossless PNG data URIs, in the order the
model reads them, in the engine's dialect ("openai", or "lmdeploy": one text with image markers)."""

from __future__ import annotations

import base64
import io
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ...limits import TILE_SIDE
from ..base import ImagePart, Turn

if TYPE_CHECKING:
    from PIL import Image as PILImage

TILE_SIZE = TILE_SIDE  # InternVL's tile edge (limits.TILE_SIDE)
LMDEPLOY_IMAGE_TOKEN = "<IMAGE_TOKEN>"


class Messages:
    """Builds the messages of a conversation; each image is encoded once while it lives (sessions re-send the
    same images on every follow-up)."""

    def __init__(self) -> None:
        self.dialect = "openai"  # or "lmdeploy", decided by the engine check
        self.uris: dict[tuple[int, bool], str] = {}
        # Re-entrant: a garbage collection inside the lock may run an image's finalizer, which takes it.
        self._lock = threading.RLock()

    def build(self, turns: list[Turn]) -> list[dict[str, Any]]:
        """One message per turn, parts in order: text items and images as PNG data URIs."""
        return [self._message(turn) for turn in turns]

    def _message(self, turn: Turn) -> dict[str, Any]:
        if turn.role == "assistant" or not turn.images:
            # Plain-string content is the form every engine reads (LMDeploy would add an empty image tag
            # to a text-only list).
            return {"role": turn.role, "content": turn.text}
        if self.dialect == "lmdeploy":
            text = "".join(f"{LMDEPLOY_IMAGE_TOKEN}\n" if isinstance(p, ImagePart) else p for p in turn.parts)
            images = [
                {"type": "image_url", "image_url": {"url": self._data_uri(p), "max_dynamic_patch": p.max_tiles}}
                for p in turn.images
            ]
            return {"role": "user", "content": [{"type": "text", "text": text}, *images]}
        content: list[dict[str, Any]] = []
        for part in turn.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image_url", "image_url": {"url": self._data_uri(part)}})
            elif part:
                content.append({"type": "text", "text": part})
        return {"role": "user", "content": content}

    def _data_uri(self, part: ImagePart) -> str:
        """One-tile images (video frames) go at InternVL's 448x448 input size, so any engine makes exactly
        one tile of them, as the local engine does."""
        one_tile = part.max_tiles == 1
        key = (id(part.image), one_tile)
        with self._lock:
            uri = self.uris.get(key)
        if uri is None:
            uri = encode_image(part.image, (TILE_SIZE, TILE_SIZE) if one_tile else None)
            with self._lock:
                if key not in self.uris:
                    self.uris[key] = uri
                    weakref.finalize(part.image, self._drop, key)
        return uri

    def _drop(self, key: tuple[int, bool]) -> None:
        with self._lock:
            self.uris.pop(key, None)


def encode_image(image: PILImage.Image, size: tuple[int, int] | None = None) -> str:
    """A lossless PNG data URI of the image as the model reads it (RGB; resized only when `size` is given)."""
    from PIL import Image

    img = image if image.mode == "RGB" else image.convert("RGB")
    if size is not None and img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = ["LMDEPLOY_IMAGE_TOKEN", "Messages", "TILE_SIZE", "encode_image"]
