"""The benchmark's model: InternVL3-1B's real architecture with random weights, built once and cached.

Vision: InternViT-300M-448px (hidden 1024, 24 layers, 16 heads, MLP 4096, qkv bias, 448 px tiles of
14 px patches, pixel shuffle 0.5 -> 256 tokens a tile). Text: Qwen2.5-0.5B (hidden 896, 24 layers, 14
heads, 2 KV heads, MLP 4864, vocab 151,674, tied embeddings, rope theta 1e6). Saved in bf16. The
tokenizer is the tests' small one; the vocabulary is padded to the real size so the embeddings and
`lm_head` cost what they really cost. Compute per tile and per token is real; the words are not.
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


def model_dir(cache: Path, layers: int) -> Path:
    return cache / f"internvl3-1b-random-{layers}L-r{RECIPE}"


def ensure_model(cache: Path, layers: int) -> tuple[Path, bool]:
    """The cached model directory, built first if missing. Returns (path, built_now)."""
    path = model_dir(cache, layers)
    marker = path / "bench-model.json"
    if marker.is_file():
        return path, False
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.tiny_internvl import build_tiny_internvl

    if path.exists():
        shutil.rmtree(path)
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    build_tiny_internvl(partial, vision_layers=layers, text_layers=layers, **ARCHITECTURE)
    (partial / "bench-model.json").write_text(json.dumps({"recipe": RECIPE, "layers": layers, **ARCHITECTURE}, indent=1))
    partial.rename(path)
    return path, True


__all__ = ["ARCHITECTURE", "FULL_LAYERS", "QUICK_LAYERS", "ensure_model", "model_dir"]
