"""The GPU path on a real GPU, as the server runs it: InternVL3-2B's architecture with random weights, the
language model in NF4 (bitsandbytes), the vision tower, projector and `lm_head` in bf16.

    python -m bench.gpu [--cache DIR] [--layers N] [--out FILE.json]

Checks and measures, in one process: the quantization layout (Linear4bit in the language model only), every
tool through the real server (the SDK's in-memory client): first-call and follow-up times and cached tokens;
decode tokens/s against the GPU's memory-bandwidth ceiling for the bytes of weights a token reads; greedy
agreement with the bf16 model (teacher-forced: the bf16 model's argmax at every step of the NF4 answer).
Run through bench/gpu.sh, which installs what the machine lacks from carried wheels. Needs CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .media import make_inputs
from .model import FULL_TEXT_LAYERS, ensure_model

VISION_LAYERS = 24


def build(cache: Path, text_layers: int) -> Path:
    """InternVL3-2B's widths (bench.model's INTERNVL3_2B), 24 vision layers and `text_layers` language ones."""
    return ensure_model(cache, VISION_LAYERS, "internvl3-2b", text_layers)[0]


def bandwidth_gbs() -> float:
    import torch

    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(10):
        started = time.perf_counter()
        y.copy_(x)
        torch.cuda.synchronize()
        best = max(best, 2 * x.numel() / (time.perf_counter() - started) / 1e9)  # read + write
    return best


def layout(backend: Any) -> dict[str, Any]:
    import bitsandbytes as bnb

    model = backend._model
    inner = model.model
    four_bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in inner.language_model.modules())
    kept = [inner.vision_tower, inner.multi_modal_projector, model.lm_head]
    leaked = sum(isinstance(m, bnb.nn.Linear4bit) for k in kept for m in k.modules())
    return {"linear4bit_in_language_model": four_bit, "linear4bit_in_vision_projector_lm_head": leaked,
            "ok": four_bit > 0 and leaked == 0}


async def tools(settings: Any, backend: Any, media: Path) -> dict[str, Any]:
    from mcp import Client

    from mcp_vision.server import build_server

    inputs = {k: str(v) for k, v in make_inputs(media).items()}  # the CPU benchmark's own inputs
    out: dict[str, Any] = {}

    async with Client(build_server(settings, backend)) as client:
        async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            started = time.perf_counter()
            result = await client.call_tool(name, arguments)
            seconds = round(time.perf_counter() - started, 3)
            if result.is_error:
                raise RuntimeError(f"{name}: {result.content[0].text}")
            data = result.structured_content or {}
            out.setdefault(name, []).append({"seconds": seconds, "usage": data.get("usage")})
            return data

        first = await call("describe_image", {"image": inputs["photo"], "question": "Describe it."})
        for question in ("What colour is the circle?", "Is there any text?"):
            await call("follow_up", {"session_id": first["session_id"], "question": question})
        await call("ocr_document", {"document": inputs["scanned_pdf"]})
        await call("compare_images", {"images": [inputs["photo"], inputs["photo_changed"]]})
        await call("video_qa", {"video": inputs["video"], "question": "What changes?", "num_frames": 8})
        await call("locate", {"image": inputs["photo"], "target": "the red circle"})
    return out


def decode(backend: Any, tokens: int) -> dict[str, Any]:
    from bench.side import weight_bytes_per_token
    from mcp_vision.backend.base import Turn
    from mcp_vision.worker import Job

    backend.chat([Turn.user("Warm up.")], Job(), max_new_tokens=8)
    result = backend.chat([Turn.user("Write a long story about a lighthouse.")], Job(), max_new_tokens=tokens,
                          min_new_tokens=tokens)
    rate = (result.output_tokens - 1) / result.stages["decode"]
    per_token = weight_bytes_per_token(backend._model)["total"]
    ceiling = bandwidth_gbs() * 1e9 / per_token
    return {"tokens_per_s": round(rate, 1), "weight_mb_per_token": round(per_token / 1e6),
            "ceiling_tokens_per_s": round(ceiling), "share_of_ceiling": round(rate / ceiling, 3)}


def agreement(model: Path, nf4: Any, tokens: int) -> dict[str, Any]:
    """The bf16 model's argmax at every step of the NF4 model's greedy answer to the same prompt."""
    import torch
    from PIL import Image

    from mcp_vision.backend.base import Turn
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.settings import Settings
    from mcp_vision.worker import Job

    turns = [Turn.user("Describe this image in detail.", [Image.new("RGB", (640, 480), "#d33")], max_tiles=6)]
    answer = nf4.chat(turns, Job(), max_new_tokens=tokens, min_new_tokens=tokens)
    del nf4
    torch.cuda.empty_cache()
    bf16 = PyTorchBackend(Settings(model=str(model), device="cuda", quantization="none", dtype="bfloat16"))
    bf16.load(Job())
    inputs = bf16._prepare(turns, tokens)
    ids = torch.cat([inputs["input_ids"], torch.tensor([answer.output_ids])], dim=1).cuda()
    pixels = torch.cat(inputs["pixel_values"]).to("cuda", torch.bfloat16)
    with torch.inference_mode():
        logits = bf16._model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels).logits[0]
    start = inputs["prompt_len"] - 1
    chosen = logits[start : start + len(answer.output_ids)].argmax(-1).tolist()
    same = sum(a == b for a, b in zip(chosen, answer.output_ids))
    return {"teacher_forced_agreement": round(same / len(answer.output_ids), 3), "tokens": len(answer.output_ids)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    parser.add_argument("--layers", type=int, default=FULL_TEXT_LAYERS["internvl3-2b"], help="language-model layers (default 28)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import anyio
    import torch

    if not torch.cuda.is_available():
        print("bench.gpu: no CUDA device", file=sys.stderr)
        return 2
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.settings import Settings
    from mcp_vision.worker import Job

    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    started = time.perf_counter()
    model = build(args.cache, args.layers)
    report["build_seconds"] = round(time.perf_counter() - started, 1)
    media = args.cache / "gpu-media"
    media.mkdir(parents=True, exist_ok=True)
    settings = Settings(model=str(model), device="cuda", quantization="nf4", allowed_dirs=(media,), call_budget=0,
                        max_new_tokens=32)
    backend = PyTorchBackend(settings)
    report["load_seconds"] = round(backend.load(Job()), 1)
    report["memory_after_load_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    report["layout"] = layout(backend)
    report["tools"] = anyio.run(tools, settings, backend, media)
    report["decode"] = decode(backend, args.tokens)
    report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report["agreement_with_bf16"] = agreement(model, backend, 32)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0 if report["layout"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
