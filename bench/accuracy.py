"""Engines' accuracy: against the float32 PyTorch model on the same weights, and on tasks with right answers.

    python -m bench.accuracy MODEL_DIR [--cache DIR] [--weights int8] [--vision int8]
    python -m bench.accuracy tests/models/trained_internvl --tasks [--per-task 20] [--engines ...]

Four measures, on one image (one 448 px tile) and a describe prompt:
- `features_cosine`: the projected vision features (every token of the tile), flattened;
- `logits_cosine` and `top1`: the prompt's last-position logits, and whether their argmax agrees;
- `teacher_forced_agreement`: over `tokens` greedy steps of the float32 model, the share of steps where the
  engine, fed the same tokens, picks the same next token (free-running greedy outputs drift apart after the
  first disagreement and then measure nothing: this measures every step);
- `greedy_prefix`: how many tokens the two free-running greedy outputs share from the start.

THRESHOLDS are what the engine must keep; tests/test_openvino.py checks them on the tiny model and this
module reports them at real widths.

`--tasks` runs the held-out synthetic tasks (bench/synthetic.py) of the trained tiny InternVL
(bench/train_tiny.py) through each engine's own `chat`, as the tools ask them, and reports the share of right
answers per task and overall; TASK_FLOORS are the most points an engine may lose against float32 PyTorch.
Unlike the cosines on random weights, these judge what users see, and do not depend on chaos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Floors for the default precisions (int8 language model, int8 vision tower), set from measurements on
# random weights: the tiny model of the tests (0.999 / 0.99 / 0.91) and InternVL3-1B's widths at 24+24 layers
# (vision features 0.97-0.997 depending on the picture, logits 0.97, teacher-forced agreement about 0.63;
# BENCHMARKS.md). Random models are chaotic (small errors grow layer by layer), so these are what the engine
# must not fall below, not the accuracy expected on a trained checkpoint. int4 misses them (0.28 agreement).
THRESHOLDS = {
    "features_cosine": 0.98,
    "logits_cosine": 0.95,
    "teacher_forced_agreement": 0.6,
}


# Engines run on the trained model, by name: the Settings fields each sets.
ENGINES: dict[str, dict[str, Any]] = {
    "pytorch-float32": {"backend": "local", "quantization": "none", "dtype": "float32"},
    "pytorch-bfloat16": {"backend": "local", "quantization": "none", "dtype": "bfloat16"},
    "pytorch-nf4": {"backend": "local", "quantization": "nf4", "dtype": "bfloat16"},
    "openvino-int8": {"backend": "openvino", "openvino_weights": "int8", "openvino_vision": "int8"},
    "openvino-int4": {"backend": "openvino", "openvino_weights": "int4", "openvino_vision": "int8"},
    "openvino-f16": {"backend": "openvino", "openvino_weights": "f16", "openvino_vision": "f16"},
}

# Most points (0..1) of overall task accuracy an engine may lose against pytorch-float32 on the trained model.
TASK_FLOORS = {"openvino-int8": 0.02, "openvino-f16": 0.02, "pytorch-bfloat16": 0.02}


def task_accuracy(model: Path, cache: Path, engine: str, *, per_task: int = 20, seed: int = 0,
                  tasks: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Held-out task accuracy of one engine (ENGINES) on `model`: per task (all it was trained on, or `tasks`)
    and overall, asked in the checkpoint family's box syntax (InternVL or Qwen2-VL)."""
    import time

    from bench.synthetic import held_out, task_accuracy as measure_tasks
    from mcp_vision.backend import create_backend
    from mcp_vision.grounding import grounding_family
    from mcp_vision.settings import Settings

    family = grounding_family(json.loads((model / "config.json").read_text())["model_type"])
    trained = tuple(json.loads((model / "training.json").read_text())["held_out"])
    samples = held_out(seed, per_task, tasks or trained, family)
    backend = create_backend(Settings(model=str(model), device="cpu", openvino_cache=cache, **ENGINES[engine]))
    started = time.monotonic()
    per = measure_tasks(backend, samples)
    right = sum(per[task]["right"] * per[task]["n"] for task in per)
    return {"engine": engine, "overall": round(right / len(samples), 4), "tasks": per, "n": len(samples),
            "seconds": round(time.monotonic() - started, 1)}


def task_failures(results: dict[str, dict[str, Any]]) -> list[str]:
    """The engines that lose more than TASK_FLOORS allows against pytorch-float32, in words."""
    base = results["pytorch-float32"]["overall"]
    return [
        f"{name} {result['overall']} < {base} - {TASK_FLOORS[name]}"
        for name, result in results.items() if name in TASK_FLOORS and result["overall"] < base - TASK_FLOORS[name] - 1e-9
    ]


def cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def measure(model: Path, cache: Path, *, weights: str = "int8", vision: str = "int8", tokens: int = 32,
            image: Any = None) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from mcp_vision.backend.base import Turn
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.backend.openvino.engine import OpenVINOBackend
    from mcp_vision.settings import Settings
    from mcp_vision.worker import Job

    if image is None:
        image = Image.new("RGB", (448, 448), "white")
        draw = ImageDraw.Draw(image)
        draw.rectangle([40, 60, 220, 240], fill="#d33")
        draw.ellipse([250, 200, 420, 400], fill="#36c")
        draw.text((60, 300), "Total: 42", fill="black")
    reference = PyTorchBackend(Settings(model=str(model), device="cpu", quantization="none", dtype="float32"))
    reference.load(Job())
    engine = OpenVINOBackend(Settings(model=str(model), backend="openvino", openvino_cache=cache,
                                      openvino_weights=weights, openvino_vision=vision))
    engine.load(Job())
    turns = [Turn.user("Describe this image in detail.", [image], max_tiles=1)]
    inputs = reference._prepare(turns, tokens)
    pixels = inputs["pixel_values"][0].float()
    with torch.inference_mode():
        ref_features = reference.family.encode(reference._model, inputs.visuals)[0]
    ov_features = engine._encode(inputs.visuals)[0]  # the engine's vision pass alone
    ids = inputs["input_ids"]
    with torch.inference_mode():
        ref_logits = reference._model(input_ids=ids, attention_mask=inputs["attention_mask"],
                                      pixel_values=pixels).logits[0, -1]
    mask = inputs["attention_mask"].numpy().astype(np.int64)
    # The engine reads the prompt with the reference's image features, so the language model is measured alone.
    ov_logits, positions = engine.prefill(ids.numpy(), mask, ref_features.numpy(), None, Job())
    greedy = reference.chat(turns, Job(), max_new_tokens=tokens, min_new_tokens=tokens).output_ids
    agree = int(int(ov_logits[0].argmax()) == greedy[0])
    position = positions[:, -1:] + 1
    for token, expected in zip(greedy[:-1], greedy[1:]):
        mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
        agree += int(int(engine.step(np.array([token], dtype=np.int64), mask, position)[0].argmax()) == expected)
        position = position + 1
    free = engine.chat(turns, Job(), max_new_tokens=tokens, min_new_tokens=tokens).output_ids
    prefix = next((i for i, (a, b) in enumerate(zip(greedy, free)) if a != b), min(len(greedy), len(free)))
    return {
        "weights": weights,
        "vision": vision,
        "features_cosine": round(cosine(ref_features.numpy(), ov_features.numpy()), 5),
        "logits_cosine": round(cosine(ref_logits.numpy(), ov_logits[0]), 5),
        "top1": bool(int(ref_logits.argmax()) == int(ov_logits[0].argmax())),
        "teacher_forced_agreement": round(agree / len(greedy), 4),
        "greedy_prefix": prefix,
        "tokens": len(greedy),
    }


def failures(result: dict[str, Any]) -> list[str]:
    """The thresholds a measurement misses, in words (empty: all kept)."""
    return [f"{name} {result[name]} < {floor}" for name, floor in THRESHOLDS.items() if result[name] < floor]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache/openvino"))
    parser.add_argument("--weights", default="int8")
    parser.add_argument("--vision", default="int8")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--tasks", action="store_true", help="held-out task accuracy of each engine (a trained model)")
    parser.add_argument("--per-task", type=int, default=20)
    parser.add_argument("--only", nargs="*", default=None, help="these tasks only (e.g. the ones the checkpoint learned)")
    parser.add_argument("--engines", nargs="*", default=list(ENGINES), choices=list(ENGINES))
    args = parser.parse_args(argv)
    if args.tasks:
        results = {}
        for engine in ["pytorch-float32", *[e for e in args.engines if e != "pytorch-float32"]]:
            try:
                results[engine] = task_accuracy(args.model, args.cache, engine, per_task=args.per_task,
                                                tasks=tuple(args.only) if args.only else None)
            except Exception as exc:  # noqa: BLE001 - one engine that cannot run here must not hide the others
                results[engine] = {"engine": engine, "error": f"{type(exc).__name__}: {exc}"[:300]}
            print(json.dumps(results[engine]), flush=True)
        ran = {k: v for k, v in results.items() if "overall" in v}
        print(json.dumps({"failures": task_failures(ran) if "pytorch-float32" in ran else ["no float32 baseline"]}))
        return 0
    result = measure(args.model, args.cache, weights=args.weights, vision=args.vision, tokens=args.tokens)
    result["failures"] = failures(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
