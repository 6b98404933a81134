"""Where the OpenVINO conversion's time goes, and what a faster vision calibration costs in right answers.

    python -m bench.conversion [--layers 4] [--recipes default fast ...] [--per-task 16]

For each calibration recipe (RECIPES: the vision tower's int8 calibration with fewer tiles, without
SmoothQuant, without bias correction), two measures in the same run:
- the conversion's stages in seconds (the manifest's `stages`) on InternVL3-1B's widths with `--layers` vision
  and text layers and random weights; the vision calibration grows with the vision layers (24 in the real
  model), so `--layers 24` gives the real figure and fewer layers a proportional one;
- the held-out task accuracy (bench/synthetic.py) of the trained tiny InternVL (tests/models/trained_internvl)
  converted with that recipe, through the OpenVINO engine's own `chat`, against PyTorch float32 on the same
  questions: a recipe is acceptable where it keeps accuracy.TASK_FLOORS["openvino-int8"].
Writes a JSON report to --out and prints a table; the CPU is named (model, AMX / AVX-512 flags).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRAINED = ROOT / "tests" / "models" / "trained_internvl"


def recipes() -> dict[str, Any]:
    from mcp_vision.backend.openvino.convert import CALIBRATION, Calibration

    return {
        "default": CALIBRATION,
        "28 tiles (the default before)": Calibration(),
        "8 tiles": Calibration(tiles=8),
        "no SmoothQuant": Calibration(smooth_quant=False),
        "no bias correction": Calibration(bias_correction=False),
        "8 tiles, no bias correction": Calibration(tiles=8, bias_correction=False),
        "8 tiles, no SmoothQuant": Calibration(tiles=8, smooth_quant=False),
        "4 tiles, no SmoothQuant": Calibration(tiles=4, smooth_quant=False),
    }


def convert_with(recipe: Any, source: Path, target: Path) -> dict[str, Any]:
    """Convert `source` into `target` with `recipe` as the vision calibration; the manifest written."""
    from mcp_vision.backend.openvino.convert import MANIFEST, convert

    started = time.monotonic()
    convert(source, target, language="int8", vision="int8", calibration=recipe)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["wall"] = round(time.monotonic() - started, 1)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conversion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4, help="vision layers (and text layers unless --text-layers)")
    parser.add_argument("--text-layers", type=int, default=None, help="language-model layers (default: --layers)")
    parser.add_argument("--arch", choices=("internvl3-1b", "internvl3-2b"), default="internvl3-1b",
                        help="whose widths the random-weight model for the timing has")
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    parser.add_argument("--recipes", nargs="*", default=None, help="names from RECIPES (default: all)")
    parser.add_argument("--per-task", type=int, default=16)
    parser.add_argument("--tasks", nargs="*", default=None, help="held-out tasks (default: the learned ones)")
    parser.add_argument("--skip-timing", action="store_true", help="accuracy on the trained model only")
    parser.add_argument("--out", type=Path, default=Path("bench-results/conversion.json"))
    args = parser.parse_args(argv)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    import nncf

    nncf.set_log_level(logging.ERROR)  # its statistics tables and progress bars

    from bench.accuracy import TASK_FLOORS, task_accuracy
    from bench.model import TITLES, ensure_model
    from bench.train_tiny import cpu_name
    from mcp_vision.backend.openvino.convert import converted_dir

    chosen = {name: r for name, r in recipes().items() if args.recipes is None or name in args.recipes}
    learned = args.tasks or [task for task, got in json.loads((TRAINED / "training.json").read_text())["held_out"].items()
                             if got["right"] >= 0.9]
    text_layers = args.text_layers or args.layers
    report: dict[str, Any] = {"cpu": cpu_name(), "arch": args.arch, "layers": args.layers, "text_layers": text_layers,
                              "threads": os.environ.get("OMP_NUM_THREADS"), "tasks": learned, "recipes": {}}
    print(f"CPU: {report['cpu']}; tasks judged: {', '.join(learned) or 'none'}", file=sys.stderr)
    baseline = task_accuracy(TRAINED, args.cache / "unused", "pytorch-float32", per_task=args.per_task,
                             tasks=tuple(learned)) if learned else None
    report["pytorch-float32"] = baseline
    model = None
    if not args.skip_timing:
        model, _ = ensure_model(args.cache, args.layers, args.arch, args.text_layers)
    for name, recipe in chosen.items():
        row: dict[str, Any] = {"recipe": recipe.__dict__}
        with tempfile.TemporaryDirectory(prefix="conversion-") as tmp:
            if model is not None:
                manifest = convert_with(recipe, model, Path(tmp) / "big")
                row |= {"stages": manifest["stages"], "seconds": manifest["seconds"]}
                shutil.rmtree(Path(tmp) / "big")
            if learned:
                cache = Path(tmp) / "trained"
                convert_with(recipe, TRAINED, converted_dir(cache, TRAINED, "int8", "int8"))
                row["accuracy"] = task_accuracy(TRAINED, cache, "openvino-int8", per_task=args.per_task,
                                                tasks=tuple(learned))
                row["keeps_floor"] = row["accuracy"]["overall"] >= baseline["overall"] - TASK_FLOORS["openvino-int8"] - 1e-9
        report["recipes"][name] = row
        print(f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'recipe'})}", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{report['cpu']}; {TITLES[args.arch]} widths, {args.layers}+{text_layers} layers; trained tiny model: "
          f"float32 {baseline['overall'] if baseline else '-'}\n")
    print("| recipe | vision calibration s | whole conversion s | int8 task accuracy | keeps the floor |")
    print("|---|---:|---:|---:|---|")
    for name, row in report["recipes"].items():
        print(f"| {name} | {row.get('stages', {}).get('vision_calibration', '-')} | {row.get('seconds', '-')} | "
              f"{row.get('accuracy', {}).get('overall', '-')} | {row.get('keeps_floor', '-')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
