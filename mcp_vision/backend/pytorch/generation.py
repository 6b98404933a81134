"""Greedy generation with transformers' `generate`: stops within a token of cancellation or the deadline, stops a
row caught in a runaway repetition loop (page_text.looping), reports progress, takes precomputed vision features and a reused KV cache, and says why it stopped."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..base import Job


def generate(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    encoded: dict[str, Any] | None,
    cache: Any,
    job: Job,
    *,
    max_new_tokens: int,
    min_new_tokens: int | None,
    native_decode: bool,
    pad_id: int,
    extra: dict[str, Any],
    on_first_token: Callable[[], None],
) -> tuple[Any, float | None]:
    """Greedy generation. `encoded` is generate's `mm_encoder_outputs` (the uncached visuals' features, see
    families.py); `extra` is the family's own model inputs. Returns (generate's output, when the first token
    was ready)."""
    import torch
    from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList

    from ...page_text import CHECK_EVERY, MIN_SPAN_TOKENS, TAIL_TOKENS, looping

    prompt_len = int(input_ids.shape[1])

    class _StopOnCancel(StoppingCriteria):
        first_token_at: float | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = int(input_ids.shape[1]) - prompt_len
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
                on_first_token()  # decoding: this criterion stops within a token
                if native_decode:  # every step from here on is a one-token decode
                    torch.backends.mkldnn.enabled = False
            if generated % 16 == 0 or generated == 1:
                job.report(generated, max_new_tokens, f"generating ({generated}/{max_new_tokens} tokens)")
            stop = job.cancelled() or job.out_of_time()
            rows = torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
            if not stop and generated >= MIN_SPAN_TOKENS and generated % CHECK_EVERY == 0:
                # A row caught in a runaway repetition loop stops there (transformers pads it from then on).
                tails = input_ids[:, max(prompt_len, int(input_ids.shape[1]) - TAIL_TOKENS):].tolist()
                rows |= torch.tensor([looping(tail) for tail in tails], dtype=torch.bool, device=input_ids.device)
            return rows

    watch = _StopOnCancel()
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "stopping_criteria": StoppingCriteriaList([watch]),
        cache_kwarg(): cache if cache is not None else DynamicCache(config=model.config.text_config),
        "return_dict_in_generate": True,
        **extra,
    }
    if encoded:
        gen_kwargs["mm_encoder_outputs"] = encoded
    if min_new_tokens:
        gen_kwargs["min_new_tokens"] = min_new_tokens
    if model.generation_config.pad_token_id is None:
        gen_kwargs["pad_token_id"] = pad_id
    device = model.device
    onednn = torch.backends.mkldnn.enabled
    try:
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **gen_kwargs)
    finally:
        torch.backends.mkldnn.enabled = onednn
    return output, watch.first_token_at


def finish_reason(new_tokens: list[int], eos_ids: set[int], job: Job, max_new_tokens: int) -> str:
    """Why an answer ended: cancelled, an end token, the length limit, or the call's deadline."""
    if job.cancelled():
        return "cancelled"
    if new_tokens and new_tokens[-1] in eos_ids:
        return "stop"
    if len(new_tokens) >= max_new_tokens:
        return "length"
    return "time" if job.out_of_time() else "stop"


def stages(started: float, vision_done: float, first_token_at: float | None, finished: float) -> dict[str, float]:
    """Seconds per stage of one generation (no first token, as when cancelled at once: no decode)."""
    first_token_at = first_token_at or finished
    return {
        "preprocess_and_vision": round(vision_done - started, 4),
        "prefill": round(first_token_at - vision_done, 4),
        "decode": round(finished - first_token_at, 4),
    }


def reading(images: int, new_tokens: int) -> str:
    """The phase before the first token: new images through the vision encoder, new tokens through prefill."""
    if not images:
        return f"reading the prompt ({new_tokens} new tokens)"
    return f"reading {images} {'image' if images == 1 else 'images'} ({new_tokens} new prompt tokens)"


@functools.cache
def cache_kwarg() -> str:
    """generate's name for the KV cache: `cache` since transformers renamed `past_key_values` (a warning on
    every call under the old name), `past_key_values` before."""
    try:
        from transformers.utils import generic
    except ImportError:  # pragma: no cover - transformers is a dependency
        return "past_key_values"
    return "cache" if hasattr(generic, "_BCCacheNameMeta") else "past_key_values"


__all__ = ["cache_kwarg", "finish_reason", "generate", "reading", "stages"]
