"""Train a tiny InternVL `-hf` checkpoint on synthetic tasks (bench/synthetic.py), so answers can be checked.

    python -m bench.train_tiny OUT_DIR [--steps N] [--seed S] [--batch B] [--lr LR]

The checkpoint is a stock InternVL (config, processor, chat template, the project's tokenizer recipe with the
tasks' words in its corpus) at tiny widths, trained on the exact conversations the server's tools send
(built with the project's prompt and composition code) and tokenized by the engine's own input builder.
Seeded: the same command gives the same weights on the same CPU kind (float sums differ between CPUs).
It prints held-out accuracy per task at the end and writes it, with the command and timings, to
OUT_DIR/training.json. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

from bench.synthetic import TASKS, Sample, Tasks, corpus, held_out, score

# Sizes: widths are multiples of 64 (bitsandbytes NF4 needs that); patch 28 gives 64 image tokens a tile,
# so tiled images and several frames stay cheap to train on two cores.
ARCH = dict(
    vision_hidden=128, vision_layers=3, vision_heads=2, vision_intermediate=512,
    text_hidden=128, text_layers=3, text_heads=2, text_kv_heads=1, text_intermediate=512,
    patch_size=28, tokenizer_vocab=1024, initializer_range=0.02, tie_word_embeddings=False,
    video_frames_like_images=True,
)

# How often each task is drawn: reading and placing are the hard ones.
MIX = {"colour": 1, "kind": 1, "count": 1.5, "number": 3, "page": 2, "box": 3, "compare": 0.75, "follow_up": 1, "video": 1}
# Qwen2-VL: the same widths, 28 px patches merged 2x2 (64 image tokens for a 448x448 picture, as InternVL's
# tile here); its rotary patch positions need no sincos start. Its video_qa layout is a video with frame
# times (not InternVL's numbered frames) and the digits are not learned at these widths: neither is trained.
ARCH_QWEN = dict(
    vision_hidden=128, vision_layers=3, vision_heads=2, vision_intermediate=512,
    text_hidden=128, text_layers=3, text_heads=2, text_kv_heads=1, text_intermediate=512,
    patch_size=28, initializer_range=0.02,
    # The language model's rotary base: Qwen2-VL gives the image tokens' rows and columns the lower-frequency
    # parts of each head (mrope_section), and at a 64-wide head the hub's base of 1e6 turns the column part by
    # under 0.01 radian across a whole picture, so where a shape lies across was invisible (every box the same,
    # measured). At 50 the rows were learned and the columns not (boxes right down, all at the left); at 10 both.
    rope_theta=10.0,
)
MIX_QWEN = {"colour": 1, "kind": 1, "count": 1, "box": 3, "compare": 0.75, "follow_up": 1}
MIXES = {"internvl": MIX, "qwen2_vl": MIX_QWEN}

# Curriculum tasks a stage may name in --mix besides MIX's (not part of the held-out set).
CURRICULUM = ("digit", "video2")


def parse_mix(text: str) -> dict[str, float]:
    """`kind=2,count=1.5` -> {"kind": 2.0, "count": 1.5}: the tasks of one stage and how often each is drawn."""
    mix = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, _, weight = item.partition("=")
        if task not in MIX and task not in CURRICULUM:
            raise argparse.ArgumentTypeError(f"unknown task {task!r}: one of {', '.join([*MIX, *CURRICULUM])}")
        try:
            mix[task] = float(weight or 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight after '=' must be a number") from None
    if not mix or sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("name at least one task with a positive weight, e.g. kind=2,count=1")
    return mix


def cpu_name() -> str:
    """The CPU's model name and its AMX / AVX-512 flags (benchmarks name their CPU)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512f", "avx512_vnni"))]
    return f"{name} ({' '.join(sorted(wanted)) or 'no AVX-512/AMX'})"


def encode(family, processor, sample: Sample, answer: bool = True):
    """(ids, labels, visuals) of `sample` as the engine builds its prompt, plus the answer and <|im_end|>
    (the only tokens with a loss); visuals: the engine's per-image inputs (pixels, and Qwen's grids)."""
    import torch

    inputs = family.build_inputs(processor, sample.turns)
    ids = inputs.ids
    if not answer:
        return ids, None, inputs.visuals
    tokenizer = processor.tokenizer
    tail = tokenizer(sample.answer, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    tail = torch.tensor(tail, dtype=ids.dtype)
    labels = torch.cat([torch.full_like(ids, -100), tail])
    return torch.cat([ids, tail]), labels, inputs.visuals


def model_inputs(processor, ids, mask, visuals) -> dict:
    """The model's keyword inputs for a batch: InternVL takes the tiles; Qwen2-VL the patch rows, each image's
    grid and which tokens are image tokens (its multimodal rotary positions are computed from them)."""
    import torch

    inputs = {"input_ids": ids, "attention_mask": mask}
    if visuals:
        inputs["pixel_values"] = torch.cat([v.pixel_values for v in visuals])
    if visuals and visuals[0].grid is not None:
        inputs["image_grid_thw"] = torch.stack([v.grid for v in visuals])
        inputs["mm_token_type_ids"] = (ids == processor.image_token_id).to(torch.int32)
    return inputs


def collate(encoded, processor):
    """(model inputs, labels) of a batch, right-padded."""
    import torch

    width = max(len(ids) for ids, _, _ in encoded)
    ids = torch.full((len(encoded), width), processor.tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (i, l, _) in enumerate(encoded):
        ids[row, : len(i)], labels[row, : len(l)], mask[row, : len(i)] = i, l, 1
    return model_inputs(processor, ids, mask, [v for _, _, visuals in encoded for v in visuals]), labels


def batches(out: Path, seed: int, size: int, mix: dict[str, float] = MIX, max_tiles: int | None = None,
            model_type: str = "internvl"):
    """Endless training batches from `Tasks(seed)`, the same sequence on every run (one generator, in order)."""
    import torch
    from transformers import AutoProcessor

    from mcp_vision.backend.pytorch.families import family_for

    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(out)
    family = family_for(model_type)
    tasks = Tasks(seed, family=family.grounding)
    names, weights = list(mix), list(mix.values())
    while True:
        batch = [tasks.sample(tasks.rng.choices(names, weights)[0], max_tiles=max_tiles) for _ in range(size)]
        yield collate([encode(family, processor, s) for s in batch], processor)


def _stream(out: Path, seed: int, size: int, mix: dict[str, float], max_tiles: int | None, model_type: str):
    """`batches` drawn in one DataLoader worker process, so drawing and tokenizing overlap the training step."""
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return batches(out, seed, size, mix, max_tiles, model_type)

    return iter(torch.utils.data.DataLoader(Stream(), batch_size=None, num_workers=1, prefetch_factor=4))


def sincos_positions(model, processor, seed: int) -> float:
    """Set the vision tower's patch position embeddings to 2D sine-cosine ones (as MAE's ViT), scaled to the
    spread of its patch embeddings on training pictures; returns that scale. The stock init is zeros, learned
    slowly: after 2,650 steps they were 3,000 times smaller than the patch embeddings (std 0.05 against 143),
    so the image tokens carried next to no position, and neither boxes nor digit order could be learned."""
    import numpy as np
    import torch

    embeddings = model.model.vision_tower.embeddings
    table = embeddings.position_embeddings  # (1, 1 + side * side, width): the class token's first
    width, side = table.shape[-1], math.isqrt(table.shape[1] - 1)
    quarter = width // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    parts = [f(np.outer(axis.reshape(-1), omega)) for axis in (rows, cols) for f in (np.sin, np.cos)]
    grid = torch.tensor(np.concatenate(parts, axis=1), dtype=table.dtype)  # (side * side, width)
    tasks = Tasks(seed + 7)
    pictures = [image for _ in range(4) for image in tasks.sample("colour", max_tiles=1).images]
    pixels = processor.image_processor(images=pictures, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        scale = float(embeddings.patch_embeddings(pixels.to(table.dtype)).std()) / float(grid.std())
        table[0, 1:] = grid * scale
    return scale


def rescale_vision(model, target: float = 1.0) -> float:
    """Divide the vision tower's embeddings (patch projection, class token, positions) and its layers' layer
    scales (lambda_1, lambda_2) by one factor, so its residual stream has std `target`; returns the factor.

    The function stays the same (every layer reads its input through a LayerNorm and the tower ends in one),
    but the training does not: the patch embeddings had grown to std 179 under AdamW while each layer added an
    update of std about 10, so the layers mixed next to nothing between patches, and what needs shapes (kind,
    digits) was not learned. After the division the layer scales move at AdamW's step size against a residual
    of std 1; the embeddings get their learning rate divided by the same factor (`param_groups`), so they keep
    the pace they had."""
    import torch

    tower = model.model.vision_tower
    embeddings = tower.embeddings
    with torch.no_grad():
        pixels = torch.randn(2, 3, *tower.config.image_size, dtype=embeddings.position_embeddings.dtype)
        out = embeddings(pixels)
        factor = float((out[0] if isinstance(out, tuple) else out).std()) / target
        for param in embeddings.parameters():
            param.div_(factor)
        for layer in tower.encoder.layer:
            layer.lambda_1.div_(factor)
            layer.lambda_2.div_(factor)
    model.config.vision_config.embedding_lr_scale = 1 / factor  # read back by param_groups on later stages
    return factor


def param_groups(model, lr: float) -> list[dict]:
    """The optimizer's groups: the vision embeddings at their recorded rate scale (see rescale_vision)."""
    scale = getattr(model.config.vision_config, "embedding_lr_scale", 1.0)
    embedding = [p for n, p in model.named_parameters() if ".vision_tower.embeddings." in f".{n}"]
    ids = {id(p) for p in embedding}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest, "lr_scale": 1.0}, {"params": embedding, "lr_scale": scale}]


def per_sample_loss(logits, labels):
    """Cross-entropy averaged over each answer's tokens, then over the batch: every sample counts the same
    (a token-level mean lets a 20-token box outweigh a one-word colour twentyfold, and the one-word tasks
    were not learned in 400 steps under it)."""
    import torch

    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(labels.shape)
    counted = (labels != -100).sum(1).clamp(min=1)
    return (per_token.sum(1) / counted).mean()


def generate(model, family, processor, sample: Sample, max_new_tokens: int = 32) -> str:
    """The greedy answer of the model in training (the engines' answers are measured by bench/accuracy.py)."""
    import torch

    from mcp_vision.backend.local_engine import decode_answer
    from mcp_vision.grounding import MARKUP

    ids, _, visuals = encode(family, processor, sample, answer=False)
    with torch.no_grad():
        out = model.generate(
            **model_inputs(processor, ids[None], torch.ones_like(ids)[None], visuals),
            max_new_tokens=max_new_tokens, do_sample=False,
        )
    return decode_answer(processor.tokenizer, out[0, len(ids):].tolist(), MARKUP[family.grounding])  # as the engine


def evaluate(model, family, processor, samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Per task: the share of right answers (and, for boxes, of answers in the right third both ways)."""
    model.eval()
    tally: dict[str, dict[str, list[bool]]] = {}
    for sample in samples:
        for key, ok in score(sample, generate(model, family, processor, sample)).items():
            tally.setdefault(sample.task, {}).setdefault(key, []).append(ok)
    model.train()
    return {task: {k: round(sum(v) / len(v), 3) for k, v in keys.items()} | {"n": len(keys["right"])}
            for task, keys in tally.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop after this many steps of the --steps schedule (what the checkpoint was cut at)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's weights (made by this script) instead of random ones")
    parser.add_argument("--family", choices=list(MIXES), default="internvl",
                        help="the model family of a new checkpoint (a stage with --init keeps its checkpoint's)")
    parser.add_argument("--tasks", nargs="*", default=None, choices=list(MIX), help="train on these tasks only")
    parser.add_argument("--mix", type=parse_mix, default=None,
                        help="a stage's tasks and weights, e.g. kind=2,count=2,colour=0.5 (instead of --tasks)")
    parser.add_argument("--loss", choices=("sample", "token"), default="sample",
                        help="average the loss per sample (default) or over all answer tokens of the batch")
    parser.add_argument("--one-tile", action="store_true", help="every image one tile (cheaper steps)")
    parser.add_argument("--position-init", choices=("keep", "sincos"), default="keep",
                        help="sincos: set the vision tower's patch position embeddings to 2D sine-cosine ones first")
    parser.add_argument("--rescale-vision", action="store_true",
                        help="divide the vision embeddings and layer scales so the tower's layers can learn (see rescale_vision)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    # One thread trains faster than two on a 2-core machine someone else also uses (measured: a step took
    # 4.4 s with one thread against 9 s with two while another process kept one core busy); the batches are
    # drawn in a second process meanwhile.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--held-out", type=int, default=30, help="held-out samples per task")
    parser.add_argument("--save-every", type=int, default=250, help="steps between checkpoints written to OUT")
    parser.add_argument("--eval-every", type=int, default=0, help="steps between quick held-out checks (0: none)")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from bench.tiny_internvl import build_tiny_internvl
    from bench.tiny_qwen import build_tiny_qwen
    from mcp_vision.backend.pytorch.families import family_for  # the engine's own prompt and image-token layout

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: Path = args.out
    if args.init:  # a later stage keeps its checkpoint's tokenizer, processor and config (the vocabulary too)
        out.mkdir(parents=True, exist_ok=True)
        for item in args.init.iterdir():
            if item.is_file() and item.name != "training.json":
                shutil.copy2(item, out / item.name)
    elif args.family == "qwen2_vl":
        build_tiny_qwen(out, "qwen2_vl", seed=args.seed, corpus=corpus(), **ARCH_QWEN)
    else:
        build_tiny_internvl(out, seed=args.seed, corpus=corpus(), **ARCH)
    model_type = AutoConfig.from_pretrained(out).model_type
    if model_type != "internvl" and (args.position_init != "keep" or args.rescale_vision):
        parser.error("--position-init and --rescale-vision change InternVL's vision tower; this checkpoint is "
                     f"{model_type}")
    processor = AutoProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    position_scale = sincos_positions(model, processor, args.seed) if args.position_init == "sincos" else None
    rescaled = rescale_vision(model) if args.rescale_vision else None
    model.train()
    family = family_for(model_type)
    default_mix = MIXES[model_type]
    tasks = tuple(default_mix)
    mix = args.mix or {task: default_mix.get(task, MIX[task]) for task in (args.tasks or default_mix)}
    stream = _stream(out, args.seed, args.batch, mix, 1 if args.one_tile else None, model_type)
    optimizer = torch.optim.AdamW(param_groups(model, args.lr), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = min(200, args.steps // 10)

    def lr_at(step: int) -> float:  # warm-up, then cosine to a tenth
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    checks = held_out(args.seed, max(4, args.held_out // 6), tasks, family.grounding)
    started = time.monotonic()
    running = None
    record: dict = {"command": "python -m bench.train_tiny " + " ".join(sys.argv[1:] if argv is None else argv),
                    "seed": args.seed, "batch": args.batch, "loss": args.loss, "lr": args.lr, "threads": args.threads,
                    "cpu": cpu_name(), "torch": torch.__version__, "family": model_type,
                    "arch": ARCH if model_type == "internvl" else ARCH_QWEN, "mix": mix, "checks": [],
                    "init": str(args.init) if args.init else None, "position_init": args.position_init,
                    "position_scale": position_scale, "vision_rescaled_by": rescaled}
    last = min(args.steps, args.stop_at or args.steps)
    for step in range(last):
        inputs, labels = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step) * group["lr_scale"]
        if args.loss == "token":
            loss = model(**inputs, labels=labels).loss
        else:
            logits = model(**inputs).logits[:, :-1]
            loss = per_sample_loss(logits, labels[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 25 == 0:
            print(f"step {step} loss {running:.4f} lr {lr_at(step):.2e} {time.monotonic() - started:.0f}s",
                  file=sys.stderr, flush=True)
        if args.eval_every and step and step % args.eval_every == 0:
            quick = evaluate(model, family, processor, checks)
            record["checks"].append({"step": step, "seconds": round(time.monotonic() - started), "held_out": quick})
            print(f"step {step} held-out {json.dumps(quick)}", file=sys.stderr, flush=True)
        if (step + 1) % args.save_every == 0 or step + 1 == last:
            model.save_pretrained(out)
            record.update(steps=step + 1, train_seconds=round(time.monotonic() - started), loss=round(running, 4))
            (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    train_seconds = time.monotonic() - started
    accuracy = evaluate(model, family, processor, held_out(args.seed, args.held_out, tasks, family.grounding))
    record.update(steps=last, train_seconds=round(train_seconds), held_out=accuracy,
                  held_out_per_task=args.held_out)
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"train_seconds": round(train_seconds), "held_out": accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
