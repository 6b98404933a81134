"""bf16 decode steps on PyTorch's own CPU kernels instead of oneDNN's (a speed choice made at load): the
same greedy output, and the oneDNN switch is back on afterwards for the next prefill and vision pass."""

from __future__ import annotations

from PIL import Image

from mcp_vision.backend.base import Turn
from mcp_vision.backend.pytorch.engine import PyTorchBackend
from mcp_vision.settings import Settings
from mcp_vision.worker import Job


def test_native_decode_keeps_greedy_output_and_restores_onednn(tiny_model_dir):
    import torch

    backend = PyTorchBackend(
        Settings(model=str(tiny_model_dir), device="cpu", quantization="none", dtype="bfloat16", cache_bytes=0)
    )
    backend.load(Job())
    assert backend.native_decode is False  # the tiny model is too small to be worth timing
    image = Image.new("RGB", (640, 480), "teal")
    outputs = []
    for native in (False, True):
        backend.native_decode = native
        result = backend.chat([Turn.user("Describe.", [image], max_tiles=2)], Job(), max_new_tokens=8, min_new_tokens=8)
        outputs.append(result.output_ids)
        assert torch.backends.mkldnn.enabled
    assert outputs[0] == outputs[1]
