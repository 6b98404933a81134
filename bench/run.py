"""`python -m bench`: mcp-vision against the seeds' reference on InternVL3-1B's architecture (random weights).

Every row runs the same inputs through the reference (processor + generate, the whole history every turn)
and through the server (its tools over the MCP SDK's in-memory client), each side in its own process,
interleaved run by run. Results go to BENCHMARKS.md (or --output) and to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .media import PAGE_DPI, make_inputs
from .model import ARCHES, FULL_LAYERS, QUICK_LAYERS, TITLES, ensure_model
from .timing import ProcessResult

ROOT = Path(__file__).resolve().parent.parent
DIGITAL_PAGES = 10
SCANNED_PAGES = 4


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    slow: bool  # runs --slow-runs times instead of --runs
    needs_layout: bool = False  # the reference is given the prompt text the server built


ROWS = [
    Row("describe_1", "describe_image, 1 tile", slow=False),
    Row("describe", "describe_image, default tile budget", slow=False),
    Row("session", "3-turn session on one image (describe + 2 follow-ups)", slow=True),
    Row("ocr_digital", f"ocr_document, born-digital PDF, {DIGITAL_PAGES} pages", slow=False),
    Row("ocr_scanned", f"ocr_document, scanned PDF, {SCANNED_PAGES} pages", slow=True),
    Row("compare", "compare_images, 2 images", slow=True, needs_layout=True),
    Row("video", "video_qa, 8 frames (1 tile each)", slow=True, needs_layout=True),
]
PRECISIONS = {  # decode ceiling: settings for the server's backend
    "bf16": {"quantization": "none", "dtype": "auto"},
    "bf16, oneDNN decode": {"quantization": "none", "dtype": "auto", "onednn_decode": True},
    "nf4": {"quantization": "nf4", "dtype": "auto"},
    "fp32": {"quantization": "none", "dtype": "float32"},
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYMUPDF_MESSAGE="fd:2", TOKENIZERS_PARALLELISM="false")
    return env


def run_process(spec: dict[str, Any], timeout: float) -> ProcessResult:
    with tempfile.TemporaryDirectory(prefix="mcp-vision-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "bench.side", str(spec_path), str(out_path)],
            cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout,
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{spec['side']} {spec['row']} run {spec.get('run')} failed:\n{proc.stderr[-4000:]}")
        result = ProcessResult.from_json(json.loads(out_path.read_text()))
    result.info["process_seconds"] = wall
    result.info["loadavg"] = [load_before, os.getloadavg()[0]]
    return result


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
        flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
        info["flags"] = [f for f in flags if f.startswith(("avx512_bf16", "avx512f", "amx", "avx2", "avx_vnni"))]
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(next(ln.split()[1] for ln in meminfo.splitlines() if ln.startswith("MemTotal")))
        info["ram_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for name in ("torch", "transformers", "mcp", "bitsandbytes", "torchvision", "pymupdf", "av"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LAYERS}+{QUICK_LAYERS} layers instead of "
                        f"{FULL_LAYERS}+{FULL_LAYERS}, one run a row: a few minutes")
    parser.add_argument("--runs", type=int, help="runs of the fast rows (default 3; 1 with --quick)")
    parser.add_argument("--slow-runs", type=int, default=1, help="runs of the slow rows (session, scanned OCR, "
                        "compare, video; default 1)")
    parser.add_argument("--tokens", type=int, default=32, help="generated tokens a request, min = max (default 32)")
    parser.add_argument("--tiles", type=int, default=6, help="the tile budget of the 'default' rows "
                        "(server MCP_VISION_MAX_TILES and the reference's max_patches; default 6, the server's is 12)")
    parser.add_argument("--describe-tiles", type=int, default=12, help="the tile budget of the describe row "
                        "(default 12, the server's default: 13 tiles for a 4:3 image)")
    parser.add_argument("--ocr-reference-pages", type=int, help="born-digital pages the reference reads through "
                        f"the model; the rest of the {DIGITAL_PAGES} are extrapolated (default 2; 1 with --quick)")
    parser.add_argument("--rows", help="comma-separated subset of: " + ", ".join(r.key for r in ROWS)
                        + ", cold_start, ceiling")
    parser.add_argument("--arch", choices=sorted(ARCHES), default="internvl3-1b", help="the architecture both sides "
                        "run, random weights (default internvl3-1b; qwen2-vl-2b: Qwen2-VL-2B's)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache", help="model and inputs (default .bench-cache/)")
    parser.add_argument("--output", type=Path, help="report file (default BENCHMARKS.md; with --quick "
                        ".bench-cache/BENCHMARKS-quick.md)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one process may take")
    parser.add_argument("--render", type=Path, metavar="RAW.json", help="only write the report again from saved raw results")
    args = parser.parse_args(argv)
    if args.render:
        from .report import render

        saved = json.loads(args.render.read_text())
        output = args.output or (args.cache / "BENCHMARKS-quick.md" if saved["config"]["quick"] else ROOT / "BENCHMARKS.md")
        text = render(saved, previous=output.read_text() if output.exists() else None)
        output.write_text(text)
        print(text)
        return 0
    quick = args.quick
    runs = args.runs or (1 if quick else 3)
    ocr_pages = args.ocr_reference_pages or (1 if quick else 2)
    output = args.output or (args.cache / "BENCHMARKS-quick.md" if quick else ROOT / "BENCHMARKS.md")
    wanted = set(args.rows.split(",")) if args.rows else None

    started = time.time()
    info = machine()
    info["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info["loadavg_start"] = os.getloadavg()
    layers = QUICK_LAYERS if quick else FULL_LAYERS
    log(f"model: {TITLES[args.arch]} architecture, {layers}+{layers} layers, random bf16 weights")
    build_started = time.perf_counter()
    model, built = ensure_model(args.cache, layers, args.arch)
    log(f"model at {model} ({'built' if built else 'cached'} in {time.perf_counter() - build_started:.1f} s)")
    media = {k: str(Path(v).resolve()) for k, v in make_inputs(args.cache / "media").items()}

    from mcp_vision.model_prompts import PromptLibrary

    ocr_prompt = PromptLibrary(None).task("ocr").text.strip()
    config = {
        "quick": quick, "arch": args.arch, "layers": layers, "runs": runs, "slow_runs": args.slow_runs, "tokens": args.tokens,
        "tiles": args.tiles, "describe_tiles": args.describe_tiles, "ocr_reference_pages": ocr_pages, "digital_pages": DIGITAL_PAGES,
        "scanned_pages": SCANNED_PAGES, "model": str(model), "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    base = {"model": str(model), "media": media, "tokens": args.tokens, "tiles": args.tiles, "ocr_prompt": ocr_prompt,
            "dpi": PAGE_DPI}
    results: dict[str, Any] = {"machine": info, "config": config, "rows": {}, "cold_start": None, "ceiling": None}

    if wanted is None or "cold_start" in wanted:
        from .cold_start import measure

        log("cold start: spawn -> initialize -> tools/list")
        results["cold_start"] = measure(max(runs, 3) if not quick else 3)

    for row in ROWS:
        if wanted is not None and row.key not in wanted:
            continue
        n = args.slow_runs if row.slow else runs
        per_side: dict[str, list[dict[str, Any]]] = {"server": [], "reference": []}
        layout = None
        server_ids: list[list[int]] | None = None
        base_ids: list[list[int]] | None = None
        for run in range(1, n + 1):
            order = ["server", "reference"] if (run % 2 == 1 or row.needs_layout) else ["reference", "server"]
            for side in order:
                if row.key == "ocr_digital" and side == "reference" and run > args.slow_runs:
                    continue  # the reference reads pages through the model: slow, measured --slow-runs times
                if side == "reference":
                    base_ids = server_ids if run == 1 else None
                spec = {**base, "side": side, "row": row.key, "run": run,
                        "server_ids": base_ids if side == "reference" else None,
                        "tiles": args.describe_tiles if row.key == "describe" else args.tiles, "warm": row.key == "describe_1" and run == 1,
                        "pages": ocr_pages if row.key == "ocr_digital" else SCANNED_PAGES, "layout": layout}
                log(f"{row.key}: {side}, run {run}/{n}")
                result = run_process(spec, args.timeout)
                if side == "server" and row.needs_layout and layout is None and result.calls:
                    layout = result.calls[0].extra.get("layout")
                if side == "server" and run == 1:  # the reference compares its greedy choices with these
                    server_ids = [ids for call in result.calls for ids in call.extra.get("ids_per_chat", [])]
                log(f"{row.key}: {side} run {run}: {result.seconds:.1f} s (+{result.load_seconds:.1f} s load), "
                    f"peak RSS {result.peak_rss_mb:.0f} MB")
                per_side[side].append(result.to_json())
        results["rows"][row.key] = {"title": row.title, "runs": n, **per_side}

    if wanted is None or "ceiling" in wanted:
        log("decode ceiling: memory bandwidth")
        bandwidth = run_process({"side": "server", "row": "bandwidth"}, args.timeout)
        decode: dict[str, Any] = {}
        for name, settings in PRECISIONS.items():
            log(f"decode ceiling: {name}")
            try:
                decode[name] = run_process({**base, **settings, "side": "server", "row": "decode", "calls": 2}, args.timeout).to_json()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                decode[name] = {"error": str(exc)[-600:]}
        results["ceiling"] = {"bandwidth": bandwidth.info, "decode": decode}

    info["loadavg_end"] = os.getloadavg()
    info["bench_minutes"] = round((time.time() - started) / 60, 1)
    raw = args.cache / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if quick else ''}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1))
    log(f"raw results: {raw}")

    from .report import render

    text = render(results, previous=output.read_text() if output.exists() else None)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    log(f"wrote {output} after {info['bench_minutes']} min")
    return 0


__all__ = ["main", "ROWS"]
