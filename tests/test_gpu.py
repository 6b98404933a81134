"""The mission's headline path on a real GPU: NF4 4-bit language model, bf16 vision tower, projector and
lm_head, every tool through the real server. Skipped without CUDA (see conftest); run with
`MCP_VISION_TEST_CUDA=1 python -m pytest -m gpu` on a machine that has one."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.server import build_server
from mcp_vision.settings import Settings

from .support.documents import scanned_pdf

pytestmark = [pytest.mark.gpu, pytest.mark.anyio]


@pytest.fixture
def cuda_settings(tiny_model_dir: Path, media_dir: Path) -> Settings:
    return Settings(model=str(tiny_model_dir), device="cuda", quantization="nf4", allowed_dirs=(media_dir,),
                    max_new_tokens=8, max_tiles=4, call_budget=0)


def test_nf4_quantizes_the_language_model_and_keeps_the_rest_bf16(cuda_settings):
    import bitsandbytes as bnb
    import torch

    from mcp_vision.backend.base import Job
    from mcp_vision.backend.pytorch.engine import PyTorchBackend

    backend = PyTorchBackend(cuda_settings)
    backend.load(Job())
    model = backend._model
    assert (backend.device, backend.quantization) == ("cuda", "nf4")
    inner = model.model
    four_bit = [m for m in inner.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "the language model's linears are not 4-bit"
    for kept in (inner.vision_tower, inner.multi_modal_projector, model.lm_head):
        assert not any(isinstance(m, bnb.nn.Linear4bit) for m in kept.modules())
        assert all(p.dtype in {torch.bfloat16, torch.float16} for p in kept.parameters())
    assert all(p.device.type == "cuda" for p in model.parameters())


async def test_every_tool_answers_on_the_gpu(cuda_settings, media_dir):
    import pymupdf  # noqa: F401 - the scanned PDF below is made with it

    image = media_dir / "a.png"
    Image.new("RGB", (640, 480), "orange").save(image)
    other = media_dir / "b.png"
    Image.new("RGB", (640, 480), "purple").save(other)
    pdf = media_dir / "scan.pdf"
    pdf.write_bytes(scanned_pdf([(400, 560), (500, 700)]))
    async with Client(build_server(cuda_settings)) as client:
        described = await client.call_tool("describe_image", {"image": str(image)})
        assert not described.is_error, described.content[0].text
        sid = described.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "And the colour?"})
        assert not follow.is_error and follow.structured_content["usage"]["cached_tokens"] > 0
        pages = await client.call_tool("ocr_document", {"document": str(pdf), "max_new_tokens": 8})
        assert not pages.is_error and len(pages.structured_content["pages"]) == 2
        compared = await client.call_tool("compare_images", {"images": [str(image), str(other)]})
        assert not compared.is_error, compared.content[0].text
