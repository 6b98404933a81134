"""The benchmark's models: InternVL3-1B's (the default) or Qwen2-VL-2B's real architecture with random
weights, built once and cached.

Vision: InternViT-300M-448px (hidden 1024, 24 layers, 16 heads, MLP 4096, qkv bias, 448 px tiles of
14 px patches, pixel shuffle 0.5 -> 256 tokens a tile). Text: Qwen2.5-0.5B (hidden 896, 24 layers, 14
heads, 2 KV heads, MLP 4864, vocab 151,674, tied embeddings, rope theta 1e6). Saved in bf16. The
tokenizer is the tests' small one; the vocabulary is padded to the real size so the embeddings and
`lm_head` cost what they really cost. Compute per tile and per token is real; the words are not.

Qwen2-VL-2B (`--arch qwen2-vl-2b`): vision 675M (embed 1280, 32 layers, 16 heads, MLP 5120, 14 px patches
merged 2x2 -> 256 tokens per 448x448 pixels); text Qwen2-1.5B (hidden 1536, 28 layers, 12 heads, 2 KV
heads, MLP 8960, vocab 151,936, tied embeddings, rope theta 1e6, mrope sections 16/24/24).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# Bump when the recipe changes, so a stale cached model is rebuilt.
RECIPE = 1

FULL_LAYERS = 24
QUICK_LAYERS = 4

ARCHITECTURE = {
    "vision_hidden": 1024,
    "vision_heads": 16,
    "vision_intermediate": 4096,
    "vision_attention_bias": True,
    "text_hidden": 896,
    "text_heads": 14,
    "text_kv_heads": 2,
    "text_intermediate": 4864,
    "vocab_size": 151_674,
    "tie_word_embeddings": True,
    "rope_theta": 1_000_000.0,
    # 0.1 rather than 0.02: with the default init greedy decoding repeats one token whatever the input,
    # so outputs could not tell two code paths apart; 0.1 keeps activations finite at 24 layers.
    "initializer_range": 0.1,
    "zero_unused_vocab": True,
    "video_frames_like_images": True,
    "dtype": "bfloat16",
}


QWEN2_VL_2B = {
    "vision_hidden": 1280,
    "vision_heads": 16,
    "vision_intermediate": 5120,
    "text_hidden": 1536,
    "text_heads": 12,
    "text_kv_heads": 2,
    "text_intermediate": 8960,
    "vocab_size": 151_936,
    "tie_word_embeddings": True,
    "rope_theta": 1_000_000.0,
    "mrope_section": [16, 24, 24],
    "initializer_range": 0.1,
    "zero_unused_vocab": True,
    "dtype": "bfloat16",
}
# InternVL3-2B: InternViT-300M (as the 1B) + Qwen2.5-1.5B (hidden 1536, 28 layers, 12 heads, 2 KV heads,
# MLP 8960, tied embeddings).
INTERNVL3_2B = {**ARCHITECTURE, "text_hidden": 1536, "text_heads": 12, "text_kv_heads": 2, "text_intermediate": 8960}
ARCHES = {"internvl3-1b": ARCHITECTURE, "internvl3-2b": INTERNVL3_2B, "qwen2-vl-2b": QWEN2_VL_2B}
TITLES = {"internvl3-1b": "InternVL3-1B", "internvl3-2b": "InternVL3-2B", "qwen2-vl-2b": "Qwen2-VL-2B"}
FULL_TEXT_LAYERS = {"internvl3-1b": 24, "internvl3-2b": 28, "qwen2-vl-2b": 28}


def model_dir(cache: Path, layers: int, arch: str = "internvl3-1b", text_layers: int | None = None) -> Path:
    text = "" if text_layers in (None, layers) else f"-{text_layers}T"
    return cache / f"{arch}-random-{layers}L{text}-r{RECIPE}"


def ensure_model(cache: Path, layers: int, arch: str = "internvl3-1b", text_layers: int | None = None) -> tuple[Path, bool]:
    """The cached model directory (`layers` vision layers, `text_layers` language ones, `layers` if not
    given), built first if missing. Returns (path, built_now)."""
    text_layers = layers if text_layers is None else text_layers
    path = model_dir(cache, layers, arch, text_layers)
    marker = path / "bench-model.json"
    if marker.is_file():
        return path, False
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench.tiny_internvl import build_tiny_internvl
    from bench.tiny_qwen import build_tiny_qwen

    if path.exists():
        shutil.rmtree(path)
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    recipe = ARCHES[arch]
    if arch.startswith("internvl"):
        build_tiny_internvl(partial, vision_layers=layers, text_layers=text_layers, **recipe)
    else:
        build_tiny_qwen(partial, "qwen2_vl", vision_layers=layers, text_layers=text_layers, **recipe)
    (partial / "bench-model.json").write_text(json.dumps(
        {"recipe": RECIPE, "arch": arch, "layers": layers, "text_layers": text_layers, **recipe}, indent=1))
    partial.rename(path)
    return path, True


__all__ = ["ARCHES", "ARCHITECTURE", "FULL_LAYERS", "FULL_TEXT_LAYERS", "INTERNVL3_2B", "QUICK_LAYERS", "QWEN2_VL_2B", "TITLES", "ensure_model", "model_dir"]
