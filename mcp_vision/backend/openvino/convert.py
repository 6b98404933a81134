"""Convert an InternVL -hf checkpoint to OpenVINO once, with OpenVINO's own converter and NNCF.

Three models land in one directory, keyed by the checkpoint and this converter (see `converted_dir`):
- `vision.xml`: pixel values of 448 px tiles -> projected vision features (vision tower + projector),
  int8 weights and activations by default (NNCF post-training quantization on a calibration set the
  package draws itself: a rendered document page, a chart, a UI-like screen and a photo-like gradient);
- `embeddings.xml`: token ids -> input embeddings (int8 weights);
- `language.xml`: a stateful language model taking `inputs_embeds` (the KV cache lives in the model's
  state, so a decode step passes one token), returning the last position's logits; int8 weights by default,
  int4 as an option.

This module needs torch and transformers (to read the checkpoint) besides openvino and nncf; the engine
that runs the result (engine.py) needs openvino and the processor only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..pytorch.families import INTERNVL

log = logging.getLogger(__name__)

CONVERTER_VERSION = 3  # bump when what is written changes: old conversions are then redone
LANGUAGE_WEIGHTS = ("int8", "int4", "f16")
VISION_WEIGHTS = ("int8", "f16")
MANIFEST = "mcp_vision_openvino.json"

Report = Callable[[str], None]


@dataclass(frozen=True)
class Calibration:
    """How the int8 vision tower is calibrated (NNCF post-training quantization, model type transformer):
    `tiles` of the calibration pictures (None: all), with SmoothQuant and bias correction or without.
    bench/conversion.py times each choice and measures its task accuracy on the trained tiny model."""

    tiles: int | None = None
    smooth_quant: bool = True
    bias_correction: bool = True


# 8 of the 28 calibration tiles (spread over every picture), with SmoothQuant and bias correction: on the trained
# tiny InternVL every held-out answer equals the 28-tile recipe's (colour, compare, boxes, count, follow-up,
# video, kind; bench/conversion.py), and at InternVL3-1B's widths the calibration, most of the conversion, is
# a statistics pass per tile. SmoothQuant stays: dropping it was faster still and kept the tiny model's
# answers but one, and the outlier channels it exists for are what a tiny model cannot show.
CALIBRATION = Calibration(tiles=8)


def checkpoint_fingerprint(source: Path) -> str:
    """A hash of what the conversion depends on, cheap to compute on a multi-GB checkpoint: the config, and
    per weight file its name, size and safetensors header (every tensor's name, dtype, shape and offsets)
    plus its first and last MiB."""
    digest = hashlib.blake2b(digest_size=12)
    for name in ("config.json", "generation_config.json"):
        path = source / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    for path in sorted(source.glob("*.safetensors")):
        size = path.stat().st_size
        digest.update(f"{path.name}|{size}|".encode())
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            digest.update(f.read(min(header_len, 64 * 2**20)))
            digest.update(f.read(2**20))
            f.seek(max(0, size - 2**20))
            digest.update(f.read(2**20))
    return digest.hexdigest()


def converted_dir(cache_root: Path, source: Path, language: str, vision: str) -> Path:
    """Where the conversion of `source` with these precisions lives (or will)."""
    import nncf
    import openvino

    key = hashlib.blake2b(
        f"{checkpoint_fingerprint(source)}|{CONVERTER_VERSION}|{openvino.__version__}|{nncf.__version__}".encode(),
        digest_size=10,
    ).hexdigest()
    return cache_root / f"{source.name or 'model'}-{key}-lm{language}-vision{vision}"


def is_converted(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def convert(source: Path, target: Path, *, language: str, vision: str, report: Report = lambda _: None,
            calibration: Calibration = CALIBRATION) -> Path:
    """Convert the checkpoint in `source` into `target` (written under a temporary name, then renamed, so a
    crash never leaves a half conversion that looks complete); an int8 vision tower calibrated by
    `calibration`. Returns `target`."""
    if language not in LANGUAGE_WEIGHTS or vision not in VISION_WEIGHTS:
        raise ValueError(f"unknown precision: language {language!r}, vision {vision!r}")
    import openvino as ov
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    started = time.monotonic()
    stages: dict[str, float] = {}  # seconds of each step, in the manifest (where conversion time goes)
    mark = [started]

    def timed(name: str) -> None:
        now = time.monotonic()
        stages[name] = round(now - mark[0], 2)
        mark[0] = now

    config = AutoConfig.from_pretrained(source, local_files_only=True)
    if getattr(config, "model_type", None) != "internvl":
        raise ValueError(f"the OpenVINO engine converts InternVL checkpoints, not {config.model_type!r}")
    report("reading the checkpoint")
    processor = AutoProcessor.from_pretrained(source, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        source, dtype=torch.float32, local_files_only=True, attn_implementation="sdpa"
    ).eval()
    timed("read")
    work = target.with_name(target.name + f".partial-{os.getpid()}")
    for stale in target.parent.glob(target.name + ".partial-*"):  # left by a converter that was killed
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with torch.inference_mode():
            report("converting the vision tower")
            vision_model = _convert_vision(model, ov)
            timed("vision_export")
            if vision == "int8":
                report("calibrating the vision tower for int8 (the longest step)")
                vision_model = _quantize_vision(vision_model, processor, report, calibration)
                timed("vision_calibration")
            ov.save_model(vision_model, work / "vision.xml")
            del vision_model
            report("converting the text embeddings")
            ov.save_model(_convert_embeddings(model, ov), work / "embeddings.xml")
            timed("embeddings")
            report("converting the language model")
            language_model = _convert_language(model, ov)
            timed("language_export")
            report(f"compressing the language model's weights to {language}")
            language_model = _compress_language(language_model, language, model.config.text_config.hidden_size)
            ov.save_model(language_model, work / "language.xml")
            timed("language_compression")
        processor.save_pretrained(work / "processor")
        config.save_pretrained(work / "processor")
        generation = source / "generation_config.json"
        if generation.is_file():
            shutil.copy(generation, work / "processor" / "generation_config.json")
        text = model.config.text_config
        manifest = {
            "converter_version": CONVERTER_VERSION,
            "openvino": ov.__version__,
            "source": str(source),
            "language_weights": language,
            "vision_weights": vision,
            "layers": text.num_hidden_layers,
            "kv_heads": text.num_key_value_heads,
            "head_dim": _head_dim(text),
            "parameters": {
                "vision": sum(p.numel() for m in INTERNVL.vision_modules(model) for p in m.parameters()),
                "language": sum(p.numel() for p in model.model.language_model.parameters()),
            },
            "seconds": round(time.monotonic() - started, 1),
            "stages": stages,
            "calibration": asdict(calibration) if vision == "int8" else None,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("converted %s to OpenVINO in %.0f s (%s)", source, time.monotonic() - started, target)
    return target


# ---------------------------------------------------------------- the three models


def _convert_vision(model: Any, ov: Any) -> Any:
    import torch

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model.model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner.get_image_features(
                pixel_values=pixel_values,
                vision_feature_layer=model.config.vision_feature_layer,
                vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                return_dict=True,
            ).pooler_output

    size = model.config.vision_config.image_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    example = torch.zeros(2, 3, size, size)
    converted = ov.convert_model(Vision(), example_input=example, input=[ov.PartialShape([-1, 3, size, size])])
    converted.inputs[0].get_tensor().set_names({"pixel_values"})
    converted.outputs[0].get_tensor().set_names({"features"})
    return converted


def _convert_embeddings(model: Any, ov: Any) -> Any:
    import nncf
    import torch

    class Embeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = model.get_input_embeddings()

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.table(input_ids)

    converted = ov.convert_model(
        Embeddings(), example_input=torch.zeros(1, 4, dtype=torch.long), input=[ov.PartialShape([-1, -1])]
    )
    converted.inputs[0].get_tensor().set_names({"input_ids"})
    converted.outputs[0].get_tensor().set_names({"inputs_embeds"})
    return nncf.compress_weights(converted, mode=nncf.CompressWeightsMode.INT8_ASYM)


def _head_dim(text: Any) -> int:
    return getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def _convert_language(model: Any, ov: Any) -> Any:
    """The language model with its KV cache as explicit inputs and outputs, traced, then made stateful."""
    import torch
    from openvino._offline_transformations import apply_make_stateful_transformation
    from transformers import DynamicCache

    text = model.config.text_config
    layers = text.num_hidden_layers
    kv_heads = text.num_key_value_heads
    head_dim = _head_dim(text)

    class Language(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = model.model.language_model
            self.head = model.lm_head

        def forward(self, inputs_embeds, attention_mask, position_ids, *past):  # type: ignore[no-untyped-def]
            cache = DynamicCache(config=text)
            for i, layer in enumerate(cache.layers):  # filled directly: lazy initialisation would trace a 1-D cat
                layer.lazy_initialization(past[2 * i], past[2 * i + 1])
                layer.keys, layer.values = past[2 * i], past[2 * i + 1]
            new = inputs_embeds.shape[1]
            total = attention_mask.shape[1]
            query = torch.arange(new) + (total - new)
            key = torch.arange(total)
            # Causal and padding in one 4-D mask (transformers passes a 4-D mask through as it is). A padding
            # position also sees itself, so no row is fully masked (that gives NaN, which then spreads).
            mask = (key[None, :] <= query[:, None])[None, None] & attention_mask[:, None, None, :].bool()
            mask = mask | (key[None, :] == query[:, None])[None, None]
            out = self.lm(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids,
                          past_key_values=cache, use_cache=True)
            logits = self.head(out.last_hidden_state[:, -1:, :])
            present = []
            for layer in cache.layers:
                present += [layer.keys, layer.values]
            return (logits, *present)

    past_len, new_len = 3, 5
    example = [
        torch.zeros(1, new_len, text.hidden_size),
        torch.ones(1, past_len + new_len, dtype=torch.long),
        torch.arange(past_len, past_len + new_len)[None],
    ]
    shapes = [ov.PartialShape([-1, -1, text.hidden_size]), ov.PartialShape([-1, -1]), ov.PartialShape([-1, -1])]
    for _ in range(2 * layers):
        example.append(torch.zeros(1, kv_heads, past_len, head_dim))
        shapes.append(ov.PartialShape([-1, kv_heads, -1, head_dim]))
    # With a mask, transformers' sdpa path repeats the KV heads for grouped-query attention (a copy of the
    # whole cache per layer and step) unless told the kernel takes GQA; OpenVINO's SDPA does, and only then
    # fuses the stateful cache into it: decode at 3,000 tokens of context 3.1 -> 11.5 tokens/s (1B widths).
    forced = os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA")
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
    try:
        converted = ov.convert_model(Language(), example_input=tuple(example), input=shapes)
    finally:
        if forced is None:
            os.environ.pop("TRANSFORMERS_SDPA_FORCE_GQA", None)
        else:
            os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = forced
    names = ["inputs_embeds", "attention_mask", "position_ids"]
    for i in range(layers):
        names += [f"past.{i}.key", f"past.{i}.value"]
    for port, name in zip(converted.inputs, names):
        port.get_tensor().set_names({name})
    converted.outputs[0].get_tensor().set_names({"logits"})
    for port, name in zip(converted.outputs[1:], names[3:]):
        port.get_tensor().set_names({"present" + name.removeprefix("past")})
    apply_make_stateful_transformation(converted, {n: "present" + n.removeprefix("past") for n in names[3:]})
    return converted


def _compress_language(converted: Any, language: str, hidden: int) -> Any:
    import nncf

    if language == "f16":
        return converted
    if language == "int8":
        return nncf.compress_weights(converted, mode=nncf.CompressWeightsMode.INT8_ASYM)
    group = next((g for g in (128, 64, 32) if hidden % g == 0), -1)
    return nncf.compress_weights(converted, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=group, ratio=1.0)


# ---------------------------------------------------------------- vision calibration


def calibration_images() -> list[Any]:
    """Images the package draws itself, of the kinds the tools read: a document page (PyMuPDF), a bar chart,
    a UI-like screen, and a photo-like picture (smooth gradients and blurred shapes)."""
    import fitz
    from PIL import Image, ImageDraw, ImageFilter

    images = []
    doc = fitz.open()
    page = doc.new_page(width=595, height=842)
    text = (
        "Quarterly report\n\nRevenue grew 12% over the previous quarter, driven by the new product line. "
        "Operating costs stayed flat. The table below lists the figures per region.\n\n"
        "Region    Q1     Q2     Q3\nNorth     1.2    1.4    1.6\nSouth     0.9    1.0    1.3\n"
    )
    page.insert_textbox(fitz.Rect(50, 50, 545, 792), text * 3, fontsize=11)
    pix = page.get_pixmap(dpi=110)
    images.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
    doc.close()

    chart = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(chart)
    draw.line([(80, 40), (80, 540), (760, 540)], fill="black", width=3)
    for i, (height, color) in enumerate(zip((300, 420, 180, 360, 250), ("#d33", "#36c", "#3a3", "#e90", "#939"))):
        draw.rectangle([120 + i * 125, 540 - height, 200 + i * 125, 540], fill=color)
        draw.text((130 + i * 125, 550), f"Q{i + 1}", fill="black")
    images.append(chart)

    screen = Image.new("RGB", (1024, 640), "#f4f4f6")
    draw = ImageDraw.Draw(screen)
    draw.rectangle([0, 0, 1024, 48], fill="#2b2d42")
    draw.text((16, 16), "File  Edit  View  Help", fill="white")
    for row in range(6):
        draw.rounded_rectangle([40, 80 + row * 80, 600, 140 + row * 80], radius=8, outline="#999", fill="white")
        draw.text((56, 100 + row * 80), f"Setting {row + 1}: enabled", fill="#222")
    draw.rounded_rectangle([760, 560, 980, 610], radius=10, fill="#1a73e8")
    draw.text((840, 578), "Save", fill="white")
    images.append(screen)

    photo = Image.new("RGB", (900, 600))
    photo.putdata([(int(120 + 100 * x / 900), int(160 - 60 * y / 600), int(220 - 120 * y / 600))
                   for y in range(600) for x in range(900)])
    draw = ImageDraw.Draw(photo)
    draw.ellipse([520, 60, 680, 220], fill="#ffd27a")
    draw.polygon([(0, 600), (250, 300), (480, 600)], fill="#4a6b3a")
    draw.polygon([(300, 600), (620, 260), (900, 600)], fill="#35502c")
    images.append(photo.filter(ImageFilter.GaussianBlur(3)))
    return images


def calibration_tiles(processor: Any, count: int | None = None) -> list[Any]:
    """The calibration pictures as the engine sees them (up to 6 tiles and the thumbnail each); `count` of
    them spread over every picture (every k-th tile), or all."""
    import numpy as np

    tiles = []
    for image in calibration_images():
        pixels = processor.image_processor(images=[image], crop_to_patches=True, max_patches=6, return_tensors="np")
        tiles += [tile[None].astype(np.float32) for tile in pixels["pixel_values"]]
    if count is not None and count < len(tiles):
        step = len(tiles) / count
        tiles = [tiles[int(i * step)] for i in range(count)]
    return tiles


def _quantize_vision(converted: Any, processor: Any, report: Report, recipe: Calibration) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    tiles = calibration_tiles(processor, recipe.tiles)
    report(f"calibrating the vision tower on {len(tiles)} tiles")
    advanced = AdvancedQuantizationParameters(
        disable_bias_correction=not recipe.bias_correction,
        **({} if recipe.smooth_quant else {"smooth_quant_alphas": AdvancedSmoothQuantParameters(matmul=-1)}),
    )
    return nncf.quantize(
        converted, nncf.Dataset(tiles), subset_size=len(tiles), model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED, advanced_parameters=advanced,
    )


def _yield_cores() -> None:
    """Run nicer, on half the cores (the last ones), with as many threads: the engine answering meanwhile
    keeps the rest. Threads are set before torch or OpenVINO start their pools."""
    os.nice(10)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) > 1:
        keep = cores[len(cores) // 2 :]
        os.sched_setaffinity(0, keep)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(len(keep))


def main(argv: list[str] | None = None) -> int:
    """`python -m mcp_vision.backend.openvino.convert SOURCE TARGET`: what the engine runs in a child process.
    Progress goes to --progress-fd as one line a step; everything else the converters print, to stderr."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="mcp_vision.backend.openvino.convert")
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--language", choices=LANGUAGE_WEIGHTS, default="int8")
    parser.add_argument("--vision", choices=VISION_WEIGHTS, default="int8")
    parser.add_argument("--progress-fd", type=int, default=None)
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="INFO")
    parser.add_argument("--background", action="store_true",
                        help="lower priority, half the cores: another engine answers meanwhile")
    args = parser.parse_args(argv)
    # Never on a stdout someone reads: NNCF draws its progress bars (rich) on sys.stdout and OpenVINO writes to
    # fd 1. Below DEBUG both go nowhere (NNCF has no switch for its bars: its `track` always draws); the
    # steps go to the progress pipe and errors to stderr. At DEBUG they join stderr.
    if args.log_level == "DEBUG":
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    else:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(name)s: %(message)s")
    if args.log_level != "DEBUG":  # the frameworks' warnings (tracer, deprecations) are noise to a user
        import warnings

        warnings.filterwarnings("ignore")
        import nncf
        import torch  # noqa: F401 - imported first, so its logging setup runs before the levels below

        nncf.set_log_level(logging.ERROR)  # its statistics tables and progress bars
        for name in ("nncf", "transformers", "torch", "openvino"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars: our steps go to the progress pipe instead
    if args.background:
        _yield_cores()
    out = os.fdopen(args.progress_fd, "w", buffering=1) if args.progress_fd is not None else sys.stderr

    def report(step: str) -> None:
        print(step, file=out, flush=True)

    try:
        convert(args.source, args.target, language=args.language, vision=args.vision, report=report)
    except (ValueError, OSError, RuntimeError) as exc:
        report(f"failed: {exc}"[:300])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "CALIBRATION", "CONVERTER_VERSION", "Calibration", "LANGUAGE_WEIGHTS", "MANIFEST", "VISION_WEIGHTS",
    "calibration_images", "calibration_tiles",
    "checkpoint_fingerprint", "convert", "converted_dir", "is_converted",
]
