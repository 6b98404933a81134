"""Build a tiny random-weight Qwen2-VL or Qwen2.5-VL checkpoint offline, laid out like the hub's.

The config, image processor, video processor, processor and chat template are the stock ones; the
tokenizer is trained here with `tokenizers` and carries the family's special tokens. Only the sizes
are small and the weights random. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

# The chat template Qwen2-VL-*-Instruct and Qwen2.5-VL-*-Instruct ship (one for both).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

_CORPUS = [
    "The image shows a red square on a white background.",
    "A photo of a cat sitting on a chair next to a window.",
    "Describe this image in detail. What is written on the page?",
    "There is a chart with three bars, a table, and some text in English.",
    "system You are a helpful assistant. user question answer screenshot video frame seconds",
    '0 1 2 3 4 5 6 7 8 9 # - * | : , . ! ? ( ) [ ] { } "bbox_2d" "label"',
]

FAMILIES = {
    "qwen2_vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
}


def build_tokenizer(vocab_size: int = 512, corpus: list[str] | None = None):
    from transformers import PreTrainedTokenizerFast

    from .tiny_internvl import train_bpe

    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(SPECIAL_TOKENS, _CORPUS + list(corpus or ()), vocab_size),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_qwen(
    path: str | Path,
    family: str = "qwen2_vl",
    *,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    vision_heads: int = 2,
    vision_intermediate: int | None = None,
    text_hidden: int = 64,
    text_layers: int = 2,
    text_heads: int = 2,
    text_kv_heads: int = 1,
    text_intermediate: int = 128,
    vocab_size: int | None = None,
    tie_word_embeddings: bool = False,
    initializer_range: float = 0.5,
    rope_theta: float = 1_000_000.0,
    mrope_section: list[int] | None = None,
    dtype: str | None = None,
    zero_unused_vocab: bool = False,
    seed: int = 0,
    patch_size: int = 14,
    corpus: list[str] | None = None,
    tokenizer_vocab: int = 512,
) -> Path:
    """Write a random-weight Qwen2-VL (`family="qwen2_vl"`) or Qwen2.5-VL (`"qwen2_5_vl"`) to `path`.

    The defaults are the tests' tiny model (14 px patches merged 2x2: a 448x448 image is 256 tokens, as
    in the real checkpoints). Real widths (the benchmark's Qwen2-VL-2B) set the sizes, a `vocab_size`
    padded beyond the small tokenizer (`zero_unused_vocab` zeroes the rows past it, so greedy answers are
    real tokens), and `dtype` ("bfloat16") for the saved weights. `patch_size` (vision tower and processors
    alike) and a tokenizer `corpus` are for the trained model (bench/train_tiny.py).
    """
    import transformers
    from transformers import GenerationConfig, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from .tiny_internvl import save_random_model

    config_name, model_name, processor_name = FAMILIES[family]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(tokenizer_vocab, corpus)
    vocab = vocab_size if vocab_size is not None else ((len(tokenizer) + 63) // 64) * 64
    if vocab < len(tokenizer):
        raise ValueError(f"vocab_size={vocab} is smaller than the tokenizer's {len(tokenizer)} tokens")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    half = text_hidden // text_heads // 2
    section = mrope_section or [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    if family == "qwen2_vl":
        vision = {
            "depth": vision_layers, "embed_dim": vision_hidden, "hidden_size": text_hidden,
            "num_heads": vision_heads, "mlp_ratio": (vision_intermediate or 4 * vision_hidden) // vision_hidden,
        }
    else:
        vision = {
            "depth": vision_layers, "hidden_size": vision_hidden, "out_hidden_size": text_hidden,
            "intermediate_size": vision_intermediate or 4 * vision_hidden, "num_heads": vision_heads,
            "fullatt_block_indexes": [vision_layers - 1], "window_size": 112, "tokens_per_second": 2,
        }
    vision.update(patch_size=patch_size, spatial_merge_size=2, temporal_patch_size=2, initializer_range=initializer_range)
    config = getattr(transformers, config_name)(
        vision_config=vision,
        text_config={
            "vocab_size": vocab,
            "hidden_size": text_hidden,
            "intermediate_size": text_intermediate,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_heads,
            "num_key_value_heads": text_kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": section},
            "initializer_range": initializer_range,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": tie_word_embeddings,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    config.architectures = [model_name]
    save_random_model(getattr(transformers, model_name), config, path, seed, len(tokenizer) if zero_unused_vocab else None,
                      dtype)
    GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=tokenizer.pad_token_id, do_sample=False,
    ).save_pretrained(path)
    # The hub checkpoints' budgets: at least 56x56 pixels, at most 16,384 merged tokens an image (a merged
    # token is 2 x patch_size on a side), frames as the stock video processor.
    factor = 2 * patch_size
    image_processor = Qwen2VLImageProcessor(patch_size=patch_size, min_pixels=56 * 56, max_pixels=factor * factor * 16384)
    processor = getattr(transformers, processor_name)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(patch_size=patch_size),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    return path


if __name__ == "__main__":
    import sys

    print(build_tiny_qwen(sys.argv[1], *(sys.argv[2:3] or [])))
