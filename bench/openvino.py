"""The OpenVINO engine against the seeds' reference (processor + generate) and the PyTorch engine, one run.

    python -m bench.openvino [--quick] [--rows describe_1,session] [--busy] [--tokens 32]

On InternVL3-1B's architecture with random weights (bench/model.py; --quick: 4+4 layers). Each row runs once a
side, each in its own process (its load time and peak RSS its own): the PyTorch engine (the server's CPU
default before this engine: bf16), the OpenVINO engine with the server's defaults (int8 language model, int8
vision tower), and the reference. Every request generates exactly --tokens tokens. Then: the decode speed of
both engines against the memory-bandwidth ceiling of the weights each reads a token, and accuracy against the
float32 PyTorch model (bench/accuracy.py). With --busy the rows run again with one core kept busy by another
process, as on a desktop where the IDE and the agent run too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .media import PAGE_DPI, make_inputs
from .model import FULL_LAYERS, QUICK_LAYERS, ensure_model
from .run import ROOT, child_env, log, machine, run_process

ROWS = {
    "describe_1": "describe_image, 1 tile",
    "describe": "describe_image, default tile budget (12: 13 tiles)",
    "session": "3-turn session (describe + 2 follow-ups)",
    "ocr_scanned": "ocr_document, scanned PDF, 4 pages",
    "compare": "compare_images, 2 images",
    "video": "video_qa, 8 frames",
}
BUSY_ROWS = ("describe_1", "session")
SIDES = ("reference", "pytorch", "openvino")


def _convert(model: Path, cache: Path, timeout: float) -> dict[str, Any]:
    from mcp_vision.backend.openvino.convert import converted_dir, is_converted

    target = converted_dir(cache, model, "int8", "int8")
    if is_converted(target):
        return {"dir": str(target), "seconds": json.loads((target / "mcp_vision_openvino.json").read_text())["seconds"],
                "cached": True}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mcp_vision.backend.openvino.convert", str(model), str(target)],
                   cwd=ROOT, env=child_env(), check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    sizes = {p.name: p.stat().st_size for p in target.glob("*.bin")}
    return {"dir": str(target), "seconds": round(time.perf_counter() - started, 1), "cached": False, "bytes": sizes}


def _spec(side: str, base: dict[str, Any], row: str, layout: Any, cache: Path) -> dict[str, Any]:
    spec = {**base, "row": row, "run": 1, "layout": layout, "pages": 4,
            "tiles": 12 if row == "describe" else base["tiles"]}
    if side == "reference":
        return {**spec, "side": "reference"}
    spec["side"] = "server"
    if side == "openvino":
        spec.update(engine="openvino", openvino_cache=str(cache), dtype="auto", quantization="auto")
    return spec


def _calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in result["calls"] if not c.get("extra", {}).get("aside")]


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    calls = _calls(result)
    return {
        "total": round(sum(c["seconds"] for c in calls), 2),
        "first": round(calls[0]["seconds"], 2) if calls else None,
        "follow_ups": [round(c["seconds"], 2) for c in calls[1:]],
        "peak_rss_mb": round(result["peak_rss_mb"]),
        "load": round(result["load_seconds"], 1),
        "cached_tokens": [c.get("cached_tokens", 0) for c in calls],
    }


def _pass(rows: list[str], base: dict[str, Any], cache: Path, timeout: float, busy: bool) -> dict[str, Any]:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    out: dict[str, Any] = {}
    try:
        for row in rows:
            layout = None
            out[row] = {}
            for side in ("pytorch", "openvino", "reference"):  # the PyTorch server first: the reference's layout
                log(f"{'busy ' if busy else ''}{row}: {side}")
                result = run_process(_spec(side, base, row, layout, cache), timeout).to_json()
                if side == "pytorch" and result["calls"]:
                    layout = result["calls"][0].get("extra", {}).get("layout")
                out[row][side] = _summary(result)
                log(f"{row}: {side} {out[row][side]['total']} s, peak RSS {out[row][side]['peak_rss_mb']} MB")
    finally:
        if spinner is not None:
            spinner.kill()
    return out


def _decode(base: dict[str, Any], cache: Path, timeout: float) -> dict[str, Any]:
    bandwidth = run_process({"side": "server", "row": "bandwidth"}, timeout).info
    read = statistics.median(bandwidth["read_gbs"])
    out: dict[str, Any] = {"bandwidth_gbs": round(read, 1)}
    for side in ("pytorch", "openvino"):
        spec = {**_spec(side, base, "decode", None, cache), "calls": 2}
        result = run_process(spec, timeout).to_json()
        call = result["calls"][-1]
        seconds = call["stages"].get("decode") or 0
        rate = (call["output_tokens"] - 1) / seconds if seconds else 0
        per_token = result["info"]["bytes_per_token"]["total"]
        ceiling = read * 1e9 / per_token
        out[side] = {"tokens_per_s": round(rate, 1), "weight_mb_per_token": round(per_token / 1e6),
                     "ceiling_tokens_per_s": round(ceiling, 1), "share_of_ceiling": round(rate / ceiling, 2)}
    return out


def _accuracy(model: Path, cache: Path, timeout: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.accuracy", str(model), "--cache", str(cache)], cwd=ROOT,
                          env=child_env(), capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _times(label: str, reference: float | None, pytorch: float | None, openvino: float | None, rss: str = "") -> str:
    """One table row: the three sides' seconds and OpenVINO's speed-up over the other two."""
    shown = " | ".join("-" if v is None else f"{v:.2f}" for v in (reference, pytorch, openvino))
    return f"| {label} | {shown} | {_ratio(reference, openvino)} faster | {_ratio(pytorch, openvino)} faster | {rss} |"


def render(results: dict[str, Any]) -> str:
    m, c = results["machine"], results["config"]
    lines = [
        f"## OpenVINO engine against the reference and the PyTorch engine ({m['date']})",
        "",
        f"`{c['command']}`: InternVL3-1B's architecture, {c['layers']}+{c['layers']} layers, random weights; "
        f"{c['tokens']} generated tokens a request; one process a side and row. CPU: {m.get('cpu')}, {m.get('cores')} "
        f"cores, flags {' '.join(m.get('flags', []))}; load average {m['loadavg_start'][0]:.1f} at the start and "
        f"{m['loadavg_end'][0]:.1f} at the end (other work shared the machine). OpenVINO: int8 language model, int8 "
        f"vision tower (weights and activations); PyTorch engine: bf16. Conversion (once): {results['conversion']['seconds']} s.",
        "",
    ]
    for label, key in (("quiet", "quiet"), ("one core busy", "busy")):
        rows = results.get(key)
        if not rows:
            continue
        lines += [f"### {label}", "",
                  "| row | reference s | PyTorch engine s | OpenVINO s | OpenVINO vs reference | OpenVINO vs PyTorch | peak RSS MB (ref / PyTorch / OpenVINO) |",
                  "|---|---|---|---|---|---|---|"]
        for row, sides in rows.items():
            r, p, o = (sides.get(s, {}) for s in SIDES)
            lines.append(_times(ROWS[row], r.get("total"), p.get("total"), o.get("total"),
                                f"{r.get('peak_rss_mb')} / {p.get('peak_rss_mb')} / {o.get('peak_rss_mb')}"))
            if row == "session" and o.get("follow_ups") and r.get("follow_ups"):
                lines.append(_times("- first call", r["first"], p["first"], o["first"]))
                lines.append(_times(f"- follow-up (mean of 2; cached tokens {o['cached_tokens'][1:]})",
                                    *(statistics.mean(x["follow_ups"]) for x in (r, p, o))))
        lines.append("")
    d = results.get("decode")
    if d:
        lines += ["### decode against the bandwidth ceiling", "",
                  f"Memory read bandwidth {d['bandwidth_gbs']} GB/s (median); ceiling = bandwidth / weight bytes a token.", "",
                  "| engine | tokens/s | weights read a token MB | ceiling tokens/s | share of ceiling |", "|---|---|---|---|---|"]
        for side in ("pytorch", "openvino"):
            e = d[side]
            lines.append(f"| {side} | {e['tokens_per_s']} | {e['weight_mb_per_token']} | {e['ceiling_tokens_per_s']} | "
                         f"{int(100 * e['share_of_ceiling'])}% |")
        lines.append("")
    a = results.get("accuracy")
    if a:
        lines += ["### accuracy against float32 PyTorch on the same weights (bench/accuracy.py)", "",
                  f"features cosine {a['features_cosine']}, last-position logits cosine {a['logits_cosine']}, top-1 "
                  f"{'agrees' if a['top1'] else 'differs'}, teacher-forced greedy agreement {a['teacher_forced_agreement']} over "
                  f"{a['tokens']} tokens, free-running greedy prefix {a['greedy_prefix']}/{a['tokens']}; thresholds "
                  f"{'all kept' if not a.get('failures') else 'missed: ' + '; '.join(a['failures'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openvino", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LAYERS}+{QUICK_LAYERS} layers")
    parser.add_argument("--rows", help="comma-separated subset of: " + ", ".join(ROWS))
    parser.add_argument("--busy", action="store_true", help="also run " + ", ".join(BUSY_ROWS) + " with one core busy")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-decode", action="store_true")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--tiles", type=int, default=6)
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache")
    parser.add_argument("--output", type=Path, help="report (default .bench-cache/openvino.md)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    layers = QUICK_LAYERS if args.quick else FULL_LAYERS
    rows = args.rows.split(",") if args.rows else list(ROWS)
    info = machine()
    info["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["loadavg_start"] = os.getloadavg()
    model, _ = ensure_model(args.cache, layers)
    cache = args.cache / "openvino"
    media = {k: str(Path(v).resolve()) for k, v in make_inputs(args.cache / "media").items()}
    from mcp_vision.model_prompts import PromptLibrary

    base = {"model": str(model), "media": media, "tokens": args.tokens, "tiles": args.tiles, "dpi": PAGE_DPI,
            "ocr_prompt": PromptLibrary(None).task("ocr").text.strip()}
    results: dict[str, Any] = {"machine": info, "config": {"layers": layers, "tokens": args.tokens,
                               "command": "python -m bench.openvino " + " ".join(sys.argv[1:] if argv is None else argv)}}
    log("converting (once)")
    results["conversion"] = _convert(model, cache, args.timeout)
    log(f"conversion: {results['conversion']}")
    if not args.no_accuracy:
        results["accuracy"] = _accuracy(model, cache, args.timeout)
        log(f"accuracy: {results['accuracy']}")
    results["quiet"] = _pass(rows, base, cache, args.timeout, busy=False)
    if args.busy:
        results["busy"] = _pass([r for r in rows if r in BUSY_ROWS], base, cache, args.timeout, busy=True)
    if not args.no_decode:
        results["decode"] = _decode(base, cache, args.timeout)
    info["loadavg_end"] = os.getloadavg()
    raw = args.cache / "results" / f"openvino-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1))
    text = render(results)
    output = args.output or args.cache / "openvino.md"
    output.write_text(text)
    print(text)
    log(f"raw results: {raw}; report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
