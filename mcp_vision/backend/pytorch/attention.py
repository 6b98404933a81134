"""Attention for decode steps on the CPU, registered with transformers' `AttentionInterface`.

A decode step attends one new token to the whole KV cache. PyTorch's CPU SDPA runs that through its
flash-attention kernel, which is slow for a single query: on InternVL3-1B's language model (14 query heads
sharing 2 KV heads) with 2,000 cached tokens it took 1.5 ms a layer (6 ms for a batch of 4), about half
of every decode step, while the same product as two matrix multiplications with the heads grouped by
their KV head takes 0.3 ms (0.7 ms), measured on a 2-core AVX-512 EPYC. So one-token steps on the CPU
run as that: queries grouped by KV head (no `repeat_kv` copies), float32 scores and softmax, the sdpa
mask; every other call (prefill, other devices) goes to transformers' own sdpa function unchanged.
"""

from __future__ import annotations

from typing import Any

NAME = "mcp_vision_sdpa"


def attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_length, dim = query.shape
    kv_heads = key.shape[1]
    if (
        q_length != 1
        or query.device.type != "cpu"
        or heads % kv_heads
        or kwargs.get("position_bias") is not None
        or kwargs.get("cache") is not None
        or kwargs.get("softcap") is not None
        or (dropout and module.training)
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # Head h uses KV head h // groups (the order repeat_kv expands them in).
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim).float()
    scores = torch.matmul(grouped, key.float().transpose(-1, -2))
    scores.mul_(scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        mask = attention_mask[..., -1:, : scores.shape[-1]]  # [batch or 1, 1, 1, kv]: broadcasts over the heads
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores.add_(mask.float())
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, value.float())  # [batch, kv_heads, groups, dim]
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).to(query.dtype).contiguous(), None


def register() -> str:
    """Register the function (and sdpa's masks) under NAME; returns NAME."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


__all__ = ["NAME", "attention", "register"]
