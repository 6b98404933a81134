"""What one conversation becomes before the model runs: token ids, per-image pixels, where each image's
placeholder tokens lie, and content keys; and how much of an earlier prompt's KV cache a new prompt may reuse.

This is the local engines' shared input side. A family adapter (families.py) builds `ModelInputs` from
`list[Turn]` with the checkpoint's own processor; an engine then runs the vision pass on the `Visual`s it
has no cached features for, and prefills from `reusable_prefix(...)` on. The transformers engine
(local.py) does so with `generate`; another engine (OpenVINO) may reuse this side as it is:

    family = families.family_for(config.model_type)   # InternVL() or QwenVL(...)
    inputs = family.build_inputs(processor, turns)     # ModelInputs: ids, mask, visuals, spans, extra
    inputs.keys = [keys(v.part) for v in inputs.visuals]   # keys = ContentKeys(), one per engine
    common = reusable_prefix(old_ids, old_keys, inputs.ids, inputs.spans, inputs.keys)

Each `Visual` carries its pixel tensor, placeholder token count, tile count and (Qwen) patch grid;
`family.encode(model, visuals)` is the transformers vision pass an engine may replace, and
`family.generate_kwargs(model, batch, width)` the extra inputs (Qwen: token types and grids for mrope).

torch is used only through the tensors the processor returns; nothing here imports it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...limits import TILE_SIDE
from ..base import ImagePart, Media, Turn, VideoPart

TILE_PIXELS = TILE_SIDE * TILE_SIDE  # one InternVL tile: the unit `max_tiles` counts in for every family


@dataclass
class Visual:
    """One image or video of the conversation as the model receives it."""

    part: Media
    kind: Literal["image", "video"]
    pixel_values: Any  # the processor's tensor: InternVL [tiles, 3, 448, 448]; Qwen [patches, patch_dim]
    tokens: int  # placeholder tokens it fills
    tiles: int  # InternVL: tiles; Qwen: 448x448-pixel equivalents (256 tokens each)
    grid: Any = None  # Qwen: the (t, h, w) patch grid row; InternVL: None
    size: tuple[int, int] | None = None  # (width, height) after the processor's resize, where it has one size


@dataclass
class ModelInputs:
    """One conversation, tokenized with its images' placeholders expanded (batch of one)."""

    input_ids: Any  # [1, n] long
    attention_mask: Any  # [1, n]
    visuals: list[Visual]  # in placeholder order
    spans: list[tuple[int, int]]  # (start, end) token positions of each visual's placeholder run
    keys: list[str]  # content key of each visual (what its vision features depend on)
    # Family-specific model inputs per token or per visual (Qwen: mm_token_type_ids, grids), merged into
    # a batch by the family adapter.
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        """The dict view the engine's inputs had before the family split (tests and tools read it)."""
        views = {
            "input_ids": lambda: self.input_ids,
            "attention_mask": lambda: self.attention_mask,
            "pixel_values": lambda: [v.pixel_values for v in self.visuals],
            "num_patches": lambda: [v.tiles for v in self.visuals],
            "images": lambda: [v.part for v in self.visuals],
        }
        if name not in views:
            raise KeyError(name)
        return views[name]()

    @property
    def ids(self) -> Any:
        return self.input_ids[0]

    @property
    def prompt_len(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def image_tokens(self) -> int:
        return sum(v.tokens for v in self.visuals)


def chat_messages(turns: list[Turn], videos: bool) -> tuple[list[dict[str, Any]], list[Media]]:
    """The conversation as chat-template messages, and its media in order. Without `videos` a VideoPart
    is refused (the caller lays frames out as images for such a model)."""
    messages = []
    media: list[Media] = []
    for turn in turns:
        content: list[dict[str, Any]] = []
        for part in turn.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image"})
                media.append(part)
            elif isinstance(part, VideoPart):
                if not videos:
                    raise ValueError("this model reads video as numbered frames, not as a video")
                content.append({"type": "video"})
                media.append(part)
            elif part:
                content.append({"type": "text", "text": part})
        messages.append({"role": turn.role, "content": content})
    return messages, media


def placeholder_spans(ids: Sequence[int], placeholders: set[int], counts: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each visual's run of placeholder tokens, given how many each fills, in order."""
    positions = [i for i, token in enumerate(ids) if token in placeholders]
    spans = []
    offset = 0
    for count in counts:
        if offset + count > len(positions):
            break
        spans.append((positions[offset], positions[offset + count - 1] + 1))
        offset += count
    return spans


def reusable_prefix(
    old_ids: Sequence[int], old_keys: list[str], ids: Sequence[int], spans: list[tuple[int, int]], keys: list[str]
) -> int:
    """How many leading tokens of a new prompt (`ids`, its visuals' `spans` and `keys`) an earlier prompt's KV
    cache (`old_ids`, `old_keys`) holds already: the shared token prefix, never the whole new prompt (one token
    must be computed), never ending inside an image, and no image in it other than the one cached there."""
    old_ids, ids = _as_list(old_ids), _as_list(ids)
    n = min(len(old_ids), len(ids) - 1)
    common = next((i for i in range(n) if old_ids[i] != ids[i]), n)
    for index, (start, end) in enumerate(spans):
        if start >= common:
            break
        if end > common or index >= len(old_keys) or old_keys[index] != keys[index]:
            return start
    return max(common, 0)


def _as_list(ids: Sequence[int]) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


class ContentKeys:
    """Content hashes of media and their detail budgets, memoised per part object (a session sends the same
    parts again every turn)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Media, str]] = {}

    def __call__(self, part: Media) -> str:
        memo = self._memo.get(id(part))
        if memo is not None and memo[0] is part:
            return memo[1]
        digest = hashlib.blake2b(digest_size=16)
        if isinstance(part, VideoPart):
            digest.update(f"video|{len(part.frames)}|{part.max_tiles}|{part.timestamps}|".encode())
            images = part.frames
        else:
            images = (part.image,)
            digest.update(f"{part.image.mode}|{part.image.size}|{part.max_tiles}|".encode())
        for image in images:
            if isinstance(part, VideoPart):
                digest.update(f"{image.mode}|{image.size}|".encode())
            digest.update(image.tobytes())
        key = digest.hexdigest()
        self._memo[id(part)] = (part, key)
        while len(self._memo) > self.LIMIT:
            self._memo.pop(next(iter(self._memo)))
        return key


__all__ = [
    "ContentKeys", "ModelInputs", "TILE_PIXELS", "Visual", "chat_messages", "placeholder_spans", "reusable_prefix",
]
