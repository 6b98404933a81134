"""What differs between the model families the local engine runs, one small adapter each.

A family says: how an image's detail budget reaches its processor (InternVL: 448 px tiles up to
`max_tiles`; Qwen: `min_pixels`/`max_pixels`, `max_tiles` x 448 x 448 pixels), how video is laid out
(InternVL: numbered frames, composed by the caller; Qwen: a video with its frame times), which modules
stay unquantized under NF4 (full module prefixes), whose box syntax its answers use, how its inputs are
built (`build_inputs`, see inputs.py), how its vision pass runs (`encode`) and what else `generate` needs
(`generate_kwargs`: Qwen's multimodal rotary positions). Everything else is shared (local.py).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ...errors import InputError
from ..base import ImagePart, Turn, VideoPart
from .model_inputs import TILE_PIXELS, ModelInputs, Visual, chat_messages, placeholder_spans


class InternVL:
    """InternVL -hf checkpoints (`model_type: internvl`): the stock processor's tiling and image tokens."""

    model_type: ClassVar[str] = "internvl"
    label: ClassVar[str] = "InternVL"
    grounding: ClassVar[str] = "internvl"
    takes_video: ClassVar[bool] = False
    # Full module prefixes: bitsandbytes matches these against qualified names, short names match nothing.
    keep_unquantized: ClassVar[tuple[str, ...]] = ("model.vision_tower", "model.multi_modal_projector", "lm_head")

    @staticmethod
    def vision_modules(model: Any) -> list[Any]:
        return [model.model.vision_tower, model.model.multi_modal_projector]

    def build_inputs(self, processor: Any, turns: list[Turn]) -> ModelInputs:
        """Token ids and per-image tiles, with the processor's own chat template, tiling and image-token
        expansion; each image keeps its own tile budget."""
        messages, media = chat_messages(turns, videos=False)
        images: list[ImagePart] = media  # type: ignore[assignment]  # no videos here
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        pieces = prompt.split(processor.image_token)
        _check_placeholders(len(pieces) - 1, len(images), "InternVL -hf")
        visuals = []
        for part in images:
            out = processor.image_processor(
                images=[part.image], crop_to_patches=part.max_tiles > 1, max_patches=part.max_tiles, return_tensors="pt"
            )
            tiles = int(out["num_patches"][0])
            visuals.append(Visual(part, "image", out["pixel_values"], tiles * processor.image_seq_length, tiles))
        num_patches = {"num_patches": [v.tiles for v in visuals]}
        expanded = pieces[0]
        for index, piece in enumerate(pieces[1:]):
            expanded += processor.replace_image_token(num_patches, index) + piece
        tokens = processor.tokenizer([expanded], return_tensors="pt")
        ids = tokens["input_ids"]
        spans = placeholder_spans(ids[0].tolist(), {processor.image_token_id}, [v.tokens for v in visuals])
        return ModelInputs(ids, tokens["attention_mask"], visuals, spans, keys=[])

    def encode(self, model: Any, visuals: list[Visual]) -> list[Any]:
        """Projected features [tokens, hidden] of each visual, in one vision pass."""
        import torch

        dtype = next(model.model.vision_tower.parameters()).dtype
        pixels = torch.cat([v.pixel_values for v in visuals]).to(model.device, dtype)
        features = model.model.get_image_features(
            pixel_values=pixels,
            vision_feature_layer=model.config.vision_feature_layer,
            vision_feature_select_strategy=model.config.vision_feature_select_strategy,
            return_dict=True,
        ).pooler_output
        out, offset = [], 0
        for v in visuals:
            out.append(features[offset : offset + v.tiles].reshape(-1, features.shape[-1]))
            offset += v.tiles
        return out

    def generate_kwargs(self, model: Any, batch: list[ModelInputs], width: int) -> dict[str, Any]:
        return {}

    @staticmethod
    def encoder_outputs(features: dict[str, Any]) -> dict[str, Any]:
        """generate's `mm_encoder_outputs` from the features of each kind, joined in placeholder order."""
        return _pooled(features, lambda joined: joined.unsqueeze(0))  # InternVL scatters one tensor


class QwenVL:
    """Qwen2-VL (`qwen2_vl`) and Qwen2.5-VL (`qwen2_5_vl`): images resized to a pixel budget, video with its
    frame times, and 3-axis rotary positions (mrope) that `generate` computes from the whole prompt."""

    keep_unquantized: ClassVar[tuple[str, ...]] = ("model.visual", "lm_head")  # the merger is inside model.visual
    takes_video: ClassVar[bool] = True

    def __init__(self, model_type: str, label: str, timed_video: bool) -> None:
        self.model_type = model_type
        self.label = label
        self.grounding = model_type  # grounding.py's family names are the model types
        self.timed_video = timed_video  # Qwen2.5-VL: the frames' spacing in seconds enters the positions

    @staticmethod
    def vision_modules(model: Any) -> list[Any]:
        return [model.model.visual]

    def build_inputs(self, processor: Any, turns: list[Turn]) -> ModelInputs:
        """Token ids and per-image (per-video) patches, with the processor's chat template; each image is
        resized within its own pixel budget (`max_tiles` x 448 x 448)."""
        import torch

        messages, media = chat_messages(turns, videos=True)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_token, video_token = processor.image_token, processor.video_token
        visuals = [self._visual(processor, part) for part in media]
        pieces, expanded, index = _split(prompt, (image_token, video_token)), "", 0
        for piece in pieces:
            if piece in (image_token, video_token):
                wanted = "image" if piece == image_token else "video"
                if index >= len(visuals) or visuals[index].kind != wanted:
                    _check_placeholders(-1, len(visuals), "Qwen2-VL")
                expanded += piece * visuals[index].tokens
                index += 1
            else:
                expanded += piece
        _check_placeholders(index, len(visuals), "Qwen2-VL")
        tokens = processor.tokenizer([expanded], return_tensors="pt")
        ids = tokens["input_ids"]
        image_id, video_id = processor.image_token_id, processor.video_token_id
        types = torch.zeros_like(ids, dtype=torch.int32)
        types[ids == image_id] = 1
        types[ids == video_id] = 2
        spans = placeholder_spans(ids[0].tolist(), {image_id, video_id}, [v.tokens for v in visuals])
        return ModelInputs(ids, tokens["attention_mask"], visuals, spans, keys=[], extra={"mm_token_type_ids": types})

    def _visual(self, processor: Any, part: ImagePart | VideoPart) -> Visual:
        budget = max(1, part.max_tiles) * TILE_PIXELS
        if isinstance(part, VideoPart):
            vp = processor.video_processor
            size = {"shortest_edge": min(vp.size["shortest_edge"], budget), "longest_edge": budget}
            out = vp(
                videos=[list(part.frames)], size=size, do_sample_frames=False, return_tensors="pt",
                **({"cap_pixels_per_frame": False} if "cap_pixels_per_frame" in vp.valid_kwargs.__annotations__ else {}),
            )
            pixels, grid, merge = out["pixel_values_videos"], out["video_grid_thw"][0], vp.merge_size
            kind = "video"
        else:
            ip = processor.image_processor
            size = {"shortest_edge": min(ip.size["shortest_edge"], budget), "longest_edge": budget}
            out = ip(images=[part.image], size=size, return_tensors="pt")
            pixels, grid, merge = out["pixel_values"], out["image_grid_thw"][0], ip.merge_size
            kind = "image"
        tokens = int(grid.prod()) // merge**2
        patch = processor.image_processor.patch_size
        shown = (int(grid[2]) * patch, int(grid[1]) * patch)
        return Visual(part, kind, pixels, tokens, max(1, math.ceil(tokens / 256)), grid=grid, size=shown)

    def encode(self, model: Any, visuals: list[Visual]) -> list[Any]:
        """Merged features [tokens, hidden] of each visual: one vision pass for the images, one for the videos."""
        import torch

        inner = model.model
        out: dict[int, Any] = {}
        for kind, encoder, name in (("image", inner.get_image_features, "pixel_values"),
                                    ("video", inner.get_video_features, "pixel_values_videos")):
            chosen = [i for i, v in enumerate(visuals) if v.kind == kind]
            if not chosen:
                continue
            pixels = torch.cat([visuals[i].pixel_values for i in chosen]).to(model.device)
            grids = torch.stack([visuals[i].grid for i in chosen]).to(model.device)
            features = encoder(**{name: pixels, f"{kind}_grid_thw": grids}, return_dict=True).pooler_output
            out.update(zip(chosen, features))
        return [out[i] for i in range(len(visuals))]

    def generate_kwargs(self, model: Any, batch: list[ModelInputs], width: int) -> dict[str, Any]:
        """The whole prompt's token types and every visual's grid, cached ones included: `generate` computes
        the rotary positions of the whole sequence from them and keeps those of the uncached tokens, so a
        reused KV prefix and a recomputed one see the same positions."""
        import torch

        # The positions' offset (rope_deltas) is kept on the model from the last call, which may have been
        # another conversation: cleared, so generate recomputes it from this prompt.
        model.model.rope_deltas = None
        types = torch.zeros((len(batch), width), dtype=torch.int32)
        for row, inputs in enumerate(batch):  # left-padded like the ids
            types[row, width - inputs.prompt_len :] = inputs.extra["mm_token_type_ids"][0]
        kwargs: dict[str, Any] = {"mm_token_type_ids": types}
        visuals = [v for inputs in batch for v in inputs.visuals]
        images = [v.grid for v in visuals if v.kind == "image"]
        videos = [v for v in visuals if v.kind == "video"]
        if images:
            kwargs["image_grid_thw"] = torch.stack(images)
        if videos:
            kwargs["video_grid_thw"] = torch.stack([v.grid for v in videos])
            if self.timed_video:
                kwargs["second_per_grid_ts"] = torch.tensor([_seconds_per_grid(v) for v in videos])
        return kwargs

    @staticmethod
    def encoder_outputs(features: dict[str, Any]) -> dict[str, Any]:
        """generate's `mm_encoder_outputs` from the features of each kind, joined in placeholder order."""
        return _pooled(features, lambda joined: (joined,))  # Qwen concatenates a sequence of per-item tensors


def _pooled(features: dict[str, Any], shape: Any) -> dict[str, Any]:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    return {kind: BaseModelOutputWithPooling(pooler_output=shape(joined)) for kind, joined in features.items()}


def _seconds_per_grid(visual: Visual) -> float:
    """Seconds one temporal patch (two frames) spans: the frames' mean spacing times the patch's frames."""
    times = visual.part.timestamps  # type: ignore[union-attr]
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1.0
    frames_per_grid = len(times) / max(1, int(visual.grid[0]))
    return float(max(step, 1e-3) * frames_per_grid)


def _split(text: str, tokens: tuple[str, ...]) -> list[str]:
    """`text` cut around every occurrence of any of `tokens` (kept as pieces of their own)."""
    import re

    return [p for p in re.split("(" + "|".join(re.escape(t) for t in tokens) + ")", text) if p]


def _check_placeholders(placed: int, media: int, family: str) -> None:
    if placed != media:
        raise InputError(
            f"The model's chat template placed {max(placed, 0)} image placeholders for {media} images: "
            f"use a {family} checkpoint whose chat template emits one per image."
        )


INTERNVL = InternVL()
FAMILIES: dict[str, Any] = {
    "internvl": INTERNVL,
    "qwen2_vl": QwenVL("qwen2_vl", "Qwen2-VL", timed_video=False),
    "qwen2_5_vl": QwenVL("qwen2_5_vl", "Qwen2.5-VL", timed_video=True),
}
Family = InternVL | QwenVL


def family_for(model_type: str | None) -> Family | None:
    return FAMILIES.get(model_type or "")


def supported() -> str:
    """The supported families, for error messages: 'InternVL (internvl), Qwen2-VL (qwen2_vl), ...'."""
    return ", ".join(f"{f.label} ({name})" for name, f in FAMILIES.items())


__all__ = ["FAMILIES", "Family", "INTERNVL", "InternVL", "QwenVL", "family_for", "supported"]
