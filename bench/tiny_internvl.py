"""Build a tiny random-weight InternVL checkpoint offline, the way a real `-hf` checkpoint is laid out.

The config, tokenizer, image processor, video processor and processor are the stock transformers
classes; only the sizes are small and the weights random. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

# The chat template InternVL `-hf` checkpoints ship: ChatML turns, one `<IMG_CONTEXT>` placeholder
# per image (the processor expands it into `<img>` + 256 context tokens per tile + `</img>`).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

_CORPUS = [
    "The image shows a red square on a white background.",
    "A photo of a cat sitting on a chair next to a window.",
    "Describe this image in detail. What is written on the page?",
    "There is a chart with three bars, a table, and some text in English.",
    "user assistant system question answer screenshot document button menu",
    "0 1 2 3 4 5 6 7 8 9 # - * | : , . ! ? ( ) [ ]",
]


def train_bpe(special_tokens: list[str], corpus: list[str], vocab_size: int = 512):
    """A byte-level BPE trained here on `corpus`, with `special_tokens` first (ids 0, 1, ...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 20, trainer=trainer)
    return tok


def save_random_model(cls, config, path: Path, seed: int, zero_from: int | None, dtype: str | None) -> None:
    """A `cls(config)` with seeded random weights, saved to `path`; embedding and `lm_head` rows from
    `zero_from` on zeroed (a vocabulary padded past the tokenizer), cast to `dtype` when given."""
    import torch

    torch.manual_seed(seed)
    model = cls(config).eval()
    if zero_from is not None:
        with torch.no_grad():
            model.get_input_embeddings().weight[zero_from:] = 0
            model.get_output_embeddings().weight[zero_from:] = 0
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
        config.dtype = dtype
    model.save_pretrained(path)


def build_tokenizer(vocab_size: int = 512, corpus: list[str] | None = None):
    """The project's tokenizer recipe; `corpus` adds text (a trained model's prompts and answers) to the BPE's."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(SPECIAL_TOKENS, _CORPUS + list(corpus or ()), vocab_size),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=8192,
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )


def build_tiny_internvl(
    path: str | Path,
    *,
    vision_hidden: int = 64,
    vision_layers: int = 1,
    vision_heads: int = 2,
    text_hidden: int = 64,
    text_layers: int = 2,
    text_heads: int = 2,
    text_kv_heads: int = 1,
    text_intermediate: int = 128,
    seed: int = 0,
    vision_intermediate: int | None = None,
    vision_attention_bias: bool = False,
    vocab_size: int | None = None,
    tie_word_embeddings: bool = True,
    initializer_range: float = 0.5,
    rope_theta: float | None = None,
    dtype: str | None = None,
    zero_unused_vocab: bool = False,
    video_frames_like_images: bool = False,
    patch_size: int = 14,
    corpus: list[str] | None = None,
    tokenizer_vocab: int = 512,
) -> Path:
    """Write a random-weight InternVL (448 px tiles, 256 tokens per tile) to `path`; return it.

    The defaults are the tests' tiny model. Real widths (the benchmark's InternVL3-1B) set the sizes, a
    `vocab_size` padded beyond the small tokenizer so the embeddings and `lm_head` cost what they really
    cost (`zero_unused_vocab` zeroes the rows past the tokenizer, so greedy answers are real tokens that
    decode to text), `dtype` ("bfloat16") for the saved weights, and `video_frames_like_images` for a video
    processor that resizes frames to 448 px and normalises them like images, so the stock video path runs
    (the class default, 384 px, does not give 256 tokens a frame). `patch_size` 28 makes 64 image tokens a
    tile instead of 256 (the trained model: a quarter of the work per tile); `corpus` and `tokenizer_vocab`
    shape the tokenizer (the trained model's prompts and answers).
    """
    from transformers import (
        GenerationConfig,
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(tokenizer_vocab, corpus)
    vocab = vocab_size if vocab_size is not None else ((len(tokenizer) + 63) // 64) * 64
    if vocab < len(tokenizer):
        raise ValueError(f"vocab_size={vocab} is smaller than the tokenizer's {len(tokenizer)} tokens")
    text_extra: dict = {}
    if rope_theta is not None:
        text_extra["rope_parameters"] = {"rope_type": "default", "rope_theta": rope_theta}
    config = InternVLConfig(
        vision_config={
            "model_type": "internvl_vision",
            "hidden_size": vision_hidden,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": vision_heads,
            "intermediate_size": vision_intermediate or vision_hidden * 4,
            "attention_bias": vision_attention_bias,
            "image_size": [448, 448],
            "patch_size": [patch_size, patch_size],
            "use_absolute_position_embeddings": True,
            "use_mean_pooling": False,
            "norm_type": "layer_norm",
            "initializer_range": initializer_range,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab,
            "hidden_size": text_hidden,
            "intermediate_size": text_intermediate,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_heads,
            "num_key_value_heads": text_kv_heads,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
            # Larger random weights than the default 0.02, so greedy output depends on the input
            # (the default init repeats one token whatever the prompt).
            "initializer_range": initializer_range,
            **text_extra,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=tie_word_embeddings,  # the top-level flag is the one InternVL obeys
    )
    config.architectures = ["InternVLForConditionalGeneration"]
    save_random_model(InternVLForConditionalGeneration, config, path, seed, len(tokenizer) if zero_unused_vocab else None, dtype)
    GenerationConfig(
        eos_token_id=config.text_config.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    ).save_pretrained(path)
    image_processor = GotOcr2ImageProcessor(
        do_resize=True,
        size={"height": 448, "width": 448},
        crop_to_patches=True,
        min_patches=1,
        max_patches=12,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    )
    video_kwargs = (
        {"size": {"height": 448, "width": 448}, "image_mean": image_processor.image_mean, "image_std": image_processor.image_std}
        if video_frames_like_images
        else {}
    )
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(**video_kwargs),
        # Tokens a 448 px tile becomes: (448 / patch)^2 patches, pixel-shuffled by the downsample ratio 0.5.
        image_seq_length=(448 // patch_size // 2) ** 2,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    return path


if __name__ == "__main__":
    import sys

    print(build_tiny_internvl(sys.argv[1]))
