"""The CPU decode-step attention computes what transformers' sdpa attention computes, and the backend uses it."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from mcp_vision.backend.pytorch.attention import NAME, attention
from mcp_vision.backend.base import ImagePart, Turn
from mcp_vision.worker import Job


class _Module(torch.nn.Module):
    """What the attention functions read from a layer."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True
        self.eval()


def _inputs(batch: int, heads: int, kv_heads: int, q_length: int, kv_length: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(batch * 100 + heads + q_length)
    shape = lambda h, n: (batch, h, n, 32)  # noqa: E731
    return (
        torch.randn(shape(heads, q_length), generator=g).to(dtype),
        torch.randn(shape(kv_heads, kv_length), generator=g).to(dtype),
        torch.randn(shape(kv_heads, kv_length), generator=g).to(dtype),
    )


def _masks(batch: int, q_length: int, kv_length: int):
    padded = torch.ones(batch, 1, q_length, kv_length, dtype=torch.bool)
    padded[0, :, :, :7] = False  # the first row is left-padded by 7
    additive = torch.zeros(batch, 1, q_length, kv_length)
    additive[0, :, :, :7] = torch.finfo(torch.float32).min
    return {"none": None, "bool": padded, "float": additive}


@pytest.mark.parametrize("mask", ["none", "bool", "float"])
@pytest.mark.parametrize(("heads", "kv_heads"), [(14, 2), (4, 4), (2, 1)])
def test_one_token_steps_match_sdpa(mask, heads, kv_heads):
    module = _Module(heads // kv_heads)
    query, key, value = _inputs(2, heads, kv_heads, 1, 50, torch.float32)
    attn_mask = _masks(2, 1, 50)[mask]
    ours, weights = attention(module, query, key, value, attn_mask, scaling=0.17)
    theirs, _ = sdpa_attention_forward(module, query, key, value, attn_mask, scaling=0.17)
    assert weights is None and ours.shape == theirs.shape == (2, 1, heads, 32)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_bf16_steps_stay_bf16_and_close():
    module = _Module(7)
    query, key, value = _inputs(3, 14, 2, 1, 300, torch.bfloat16)
    ours, _ = attention(module, query, key, value, None)
    exact, _ = sdpa_attention_forward(module, query.float(), key.float(), value.float(), None)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), exact, rtol=2e-2, atol=2e-2)


def test_prefill_goes_to_sdpa_unchanged():
    module = _Module(2)
    query, key, value = _inputs(1, 4, 2, 9, 9, torch.float32)
    ours, _ = attention(module, query, key, value, None)
    theirs, _ = sdpa_attention_forward(module, query, key, value, None)
    assert torch.equal(ours, theirs)


def test_the_cpu_backend_decodes_with_it_and_answers_as_sdpa_does(tiny_backend):
    model = tiny_backend._model
    assert model.config.text_config._attn_implementation == NAME
    assert model.config.vision_config._attn_implementation != NAME  # the vision tower is left alone
    turns = [Turn("user", [ImagePart(Image.new("RGB", (600, 400), (40, 90, 200)), 2), "Describe it."])]
    ours = tiny_backend.chat(turns, Job(), max_new_tokens=12, min_new_tokens=12)
    try:
        model.set_attn_implementation({"text_config": "sdpa"})
        theirs = tiny_backend.chat(turns, Job(), max_new_tokens=12, min_new_tokens=12)
    finally:
        model.set_attn_implementation({"text_config": NAME})
    assert ours.output_ids == theirs.output_ids
