"""BENCHMARKS.md from the raw results of `python -m bench` (rendered again with `--render RAW.json`)."""

from __future__ import annotations

import statistics
from typing import Any

ANALYSIS_START = "<!-- analysis:start (kept when the file is regenerated) -->"
ANALYSIS_END = "<!-- analysis:end -->"


def _f(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _calls(result: dict[str, Any], aside: bool = False) -> list[dict[str, Any]]:
    return [c for c in result["calls"] if bool(c.get("extra", {}).get("aside")) == aside]


def _total(result: dict[str, Any]) -> float:
    return sum(c["seconds"] for c in _calls(result))


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not results:
        return None
    ordered = sorted(results, key=_total)
    return ordered[(len(ordered) - 1) // 2]


def _stages(calls: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in calls:
        for key, value in c["stages"].items():
            out[key] = out.get(key, 0.0) + value
    tokens = sum(c["output_tokens"] for c in calls)
    chats = sum(c.get("chats", 1) for c in calls)
    decode = out.get("decode", 0.0)
    out["tok_s"] = (tokens - chats) / decode if decode > 0 and tokens > chats else 0.0
    out["prompt_tokens"] = sum(c["prompt_tokens"] for c in calls)
    out["image_tokens"] = sum(c["image_tokens"] for c in calls)
    out["cached_tokens"] = sum(c.get("cached_tokens", 0) for c in calls)
    out["chats"] = chats
    out["generate_calls"] = sum(c.get("extra", {}).get("generate_calls", c.get("chats", 1)) for c in calls)
    return out


def _side(results: list[dict[str, Any]], scale: float = 1.0) -> dict[str, Any] | None:
    run = _median_run(results)
    if run is None:
        return None
    totals = [_total(r) * scale for r in results]
    return {
        "total": statistics.median(totals),
        "totals": totals,
        "run": run,
        "stages": _stages(_calls(run)),
        "peak_rss": max(r["peak_rss_mb"] for r in results),
        "work_rss": max((r["info"].get("work_peak_rss_mb") or 0) for r in results) or None,
        "load": statistics.median(r["load_seconds"] for r in results),
    }


def _divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token, None when equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _greedy(key: str, server: list[dict[str, Any]], reference: list[dict[str, Any]]) -> str:
    """Exact id equality per model request, and the teacher-forced per-step argmax agreement where they part."""
    if not server or not reference:
        return "-"
    s_chats: list[tuple[str, list[int]]] = []
    for c in server[0]["calls"]:
        per = c.get("extra", {}).get("ids_per_chat") or []
        s_chats += [(c["label"] if len(per) == 1 else f"{c['label']} {i + 1}", ids) for i, ids in enumerate(per)]
    r_chats = [(c["label"], c["ids"], c.get("extra", {}).get("argmax_agreement")) for c in reference[0]["calls"]]
    if not s_chats:
        return "n/a (the server read the text layer; no model call)"
    n = min(len(s_chats), len(r_chats))
    same, agree, steps, parted, chain_broken = 0, 0, 0, [], False
    notes = []
    for (label, s_ids), (_, r_ids, agreement) in zip(s_chats[:n], r_chats[:n]):
        if chain_broken:
            notes.append(f"{label}: n/a (earlier answers differ, so the prompts differ)")
            continue
        k = _divergence(s_ids, r_ids)
        if k is None:
            same += 1
            agree, steps = agree + len(s_ids), steps + len(s_ids)
            continue
        parted.append(str(k))
        if agreement and agreement.get("agree") is not None:
            agree, steps = agree + agreement["agree"], steps + agreement["steps"]
        elif key == "session":
            chain_broken = True
    text = f"identical ids {same}/{n}"
    if parted:
        text += f" (the others part at token {', '.join(parted)} of {len(s_chats[0][1])})"
    if steps and parted:
        text += f"; per-step argmax agreement {agree}/{steps} ({100 * agree / steps:.0f}%)"
    return text + ("; " + "; ".join(notes) if notes else "")


def _ratio(server: float | None, reference: float | None) -> str:
    if not server or not reference:
        return "-"
    return f"{server / reference:.2f}"


def _row_tables(key: str, row: dict[str, Any], config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    server_runs, ref_runs = row.get("server", []), row.get("reference", [])
    scale = 1.0
    if key == "ocr_digital" and ref_runs:
        measured = ref_runs[0]["info"].get("pages_measured") or 1
        scale = config["digital_pages"] / measured
    s, r = _side(server_runs), _side(ref_runs, scale)
    lines = [f"### {row['title']}", ""]
    summary = {"server": s["total"] if s else None, "reference": r["total"] if r else None,
               "greedy": _greedy(key, server_runs, ref_runs), "runs": (len(server_runs), len(ref_runs))}
    if s is None or r is None:
        lines += ["(not run)", ""]
        return lines, summary
    ss, rs = s["stages"], r["stages"]
    rows = [
        ("runs", f"{len(server_runs)}", f"{len(ref_runs)}"),
        ("total s (median)", _f(s["total"]), _f(r["total"]) + (" (extrapolated)" if scale != 1.0 else "")),
        ("each run s", ", ".join(_f(t, 1) for t in s["totals"]), ", ".join(_f(t, 1) for t in r["totals"])),
        ("media decode s (server: all outside the engine)", _f(ss.get("outside_engine")), _f(rs.get("media") and rs["media"] * scale)),
        ("preprocess + vision encoder s", _f(ss.get("preprocess_and_vision")),
         f"{_f((rs.get('preprocess_and_vision') or 0) * scale)} ({_f((rs.get('preprocess') or 0) * scale)} + {_f((rs.get('vision') or 0) * scale)})"),
        ("prefill s", _f(ss.get("prefill")), _f((rs.get("prefill") or 0) * scale)),
        ("decode tokens/s (all answers of a batch together)", _f(ss.get("tok_s")), _f(rs.get("tok_s"))),
        ("model requests (answers)", f"{ss['chats']}" + (f" in {ss['generate_calls']} batched generate calls"
         if ss.get("generate_calls", ss["chats"]) < ss["chats"] else ""), f"{rs['chats']}" + (f" measured, {config['digital_pages']} extrapolated" if scale != 1.0 else "")),
        ("prompt tokens (image tokens)", f"{ss['prompt_tokens']} ({ss['image_tokens']})", f"{rs['prompt_tokens']} ({rs['image_tokens']})"),
        ("prompt tokens reused from the session's KV cache", f"{ss['cached_tokens']}", "0"),
        ("model load s (import + load, median)", _f(s["load"]), _f(r["load"])),
        ("peak RSS MB, whole process (loading peaks here)", f"{s['peak_rss']:.0f}", f"{r['peak_rss']:.0f}"),
        ("peak RSS MB after load (the row's own work)", _f(s["work_rss"], 0), _f(r["work_rss"], 0)),
    ]
    lines += ["| | server (MCP, in-memory client) | reference (processor + generate) |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", f"Server / reference: **{_ratio(s['total'], r['total'])}**. Greedy outputs (run 1): {summary['greedy']}.", ""]
    if key == "session":
        s_calls, r_calls = _calls(s["run"]), _calls(r["run"])
        lines += ["| turn | server s | reference s | server / reference | reference / server | server cached tokens |",
                  "|---|---|---|---|---|---|"]
        for sc, rc in zip(s_calls, r_calls):
            lines.append(f"| {sc['label']} | {_f(sc['seconds'])} | {_f(rc['seconds'])} | {_ratio(sc['seconds'], rc['seconds'])} | "
                         f"{_f(rc['seconds'] / sc['seconds'], 1)}x | {sc.get('cached_tokens', 0)} |")
        lines.append("")
        summary["follow_ups"] = [(sc["seconds"], rc["seconds"]) for sc, rc in list(zip(s_calls, r_calls))[1:]]
    if key == "describe_1":
        s_warm = [c for run in server_runs for c in _calls(run, aside=True)]
        r_warm = [c for run in ref_runs for c in _calls(run, aside=True)]
        if s_warm and r_warm:
            sw, rw = s_warm[0], r_warm[0]
            lines += [f"Second call in the same process (another image, 1 tile): server {_f(sw['seconds'])} s, reference "
                      f"{_f(rw['seconds'])} s (first calls above: server {_f(_calls(server_runs[0])[0]['seconds'])} s, reference "
                      f"{_f(_calls(ref_runs[0])[0]['seconds'])} s).", ""]
            summary["warm"] = (sw["seconds"], rw["seconds"])
    return lines, summary


def _ceiling(ceiling: dict[str, Any]) -> list[str]:
    bw = ceiling["bandwidth"]
    read_best, read_median = max(bw["read_gbs"]), statistics.median(bw["read_gbs"])
    copy_best = max(bw["copy_gbs"])
    lines = [
        "## Decode ceiling",
        "",
        f"Memory bandwidth, measured: read (sum over a {bw['buffer_gib']:g} GiB float32 buffer, {bw['threads']} threads) "
        f"best {read_best:.1f} GB/s, median {read_median:.1f} GB/s of {len(bw['read_gbs'])}; copy best {copy_best:.1f} GB/s "
        "(bytes read + written). Ceiling = weight bytes read per generated token / best read bandwidth. Measured = the "
        "server's engine on a text-only prompt (a few dozen tokens of context, so the KV cache adds little), median of 2 calls.",
        "",
        "| precision | weights read per token (layers + lm_head) | ceiling tokens/s | measured tokens/s | of ceiling | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in ceiling["decode"].items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error'].splitlines()[-1][:120]} | | | | |")
            continue
        b = result["info"]["bytes_per_token"]
        if name == "bf16" and result["info"].get("native_decode"):
            name = "bf16 (the server's choice: decode without oneDNN)"
        rates = []
        for c in result["calls"]:
            decode = c["stages"].get("decode", 0)
            if decode > 0:
                rates.append((c["output_tokens"] - 1) / decode)
        measured = statistics.median(rates) if rates else 0.0
        ceiling_rate = read_best * 1e9 / b["total"]
        lines.append(
            f"| {name} | {b['total'] / 1e6:.0f} MB ({b['layers'] / 1e6:.0f} + {b['lm_head'] / 1e6:.0f} {b['head_dtype']}) | "
            f"{ceiling_rate:.1f} | {measured:.2f} | {100 * measured / ceiling_rate:.0f}% | {result['peak_rss_mb']:.0f} |"
        )
    lines.append("")
    return lines


def _decode_choice(results: dict[str, Any]) -> str:
    choices = {r["info"].get("native_decode") for row in results["rows"].values() for r in row.get("server", [])}
    if choices == {True}:
        return "here: PyTorch's, in every server process"
    if choices == {False}:
        return "here: oneDNN's, in every server process"
    return "here: varied between processes" if len(choices) > 1 else "not recorded"


def render(results: dict[str, Any], previous: str | None = None) -> str:
    m, config = results["machine"], results["config"]
    layers = config["layers"]
    arch = {"qwen2-vl-2b": "Qwen2-VL-2B"}.get(config.get("arch", ""), "InternVL3-1B")
    title = "Qwen2-VL" if arch.startswith("Qwen") else "InternVL"
    lines = [
        "# Benchmarks",
        "",
        f"mcp-vision against the reference way to run {title} (the seeds' examples: `AutoProcessor` + "
        "`apply_chat_template` + `processor(text, images)` + `model.generate`, the whole history re-run every turn), "
        f"on {arch}'s architecture with random weights ({layers}+{layers} layers"
        + ("; a --quick run, NOT the real depth" if config["quick"] else ", the real depth") + ").",
        "",
        f"Command: `{config['command'].strip()}` ({m.get('bench_minutes', '?')} min). Regenerate the tables from the "
        "raw results with `python -m bench --render .bench-cache/results/<file>.json`.",
        "",
        "## Machine",
        "",
        f"- CPU: {m.get('cpu')} ({m.get('cores')} cores; {', '.join(m.get('flags', []))}), RAM {m.get('ram_gib')} GiB",
        f"- Python {m.get('python')}, torch {m.get('torch')}, transformers {m.get('transformers')}, mcp {m.get('mcp')}, "
        f"bitsandbytes {m.get('bitsandbytes')}, torchvision {m.get('torchvision')}, PyMuPDF {m.get('pymupdf')}, PyAV {m.get('av')}",
        f"- Date: {m.get('date')}. Load average (1 min) at start {m.get('loadavg_start', [0])[0]:.1f}, at end "
        f"{m.get('loadavg_end', [0])[0]:.1f}: the machine is shared, and other work ran alongside.",
        "",
        "## Setup",
        "",
        ("- Model: vision Qwen2-VL-2B's ViT (embed 1280, 16 heads, MLP 5120, patch 14 merged 2x2 -> 256 tokens per "
         "448x448 pixels), language Qwen2-1.5B (hidden 1536, 12 heads, 2 KV heads, MLP 8960, vocab 151,936, tied "
         "embeddings, mrope)" if title == "Qwen2-VL" else
         "- Model: vision InternViT-300M-448px (hidden 1024, 16 heads, MLP 4096, 448 px tiles, patch 14, pixel shuffle "
         "0.5 -> 256 tokens a tile), language Qwen2.5-0.5B (hidden 896, 14 heads, 2 KV heads, MLP 4864, vocab 151,674, "
         "tied embeddings)")
        + ", random weights saved in bf16, built by `bench/model.py` (cached under `.bench-cache/`).",
        "- Both sides in bf16 on the CPU (the server's CPU default: no quantization); the same thread count (torch default). "
        "The server times oneDNN's and PyTorch's own bf16 matrix-vector kernels at load and decodes on the faster one "
        f"({_decode_choice(results)}); vision and prefill use oneDNN on both sides. The server's one-token decode "
        "steps attend with `mcp_vision/backend/attention.py` (grouped matrix products in float32) instead of the CPU "
        "flash-attention kernel; its prefill uses sdpa like the reference. Scanned pages are read "
        "MCP_VISION_OCR_BATCH (4) at a time in one batched generate. The reference is stock (oneDNN and sdpa "
        "throughout).",
        f"- Every request generates exactly {config['tokens']} tokens (min_new_tokens = max_new_tokens) on both sides, "
        "greedy. The server's backend is the stock `PyTorchBackend` with only that fixed length forced and its "
        "`ChatResult`s kept (stages, ids).",
        f"- Tile budgets: the describe row uses {config.get('describe_tiles', config['tiles'])} (a 4:3 image -> "
        f"{config.get('describe_tiles', config['tiles'])} tiles + thumbnail); session, scanned OCR and compare use "
        f"{config['tiles']}"
        + (" (the server's default is 12; at 12 every page and image costs 13 tiles, too slow for all rows on this "
           "machine)" if config["tiles"] != 12 else "")
        + ". Server: `MCP_VISION_MAX_TILES`; reference: `max_patches`.",
        "- Server rows: the real tools through the MCP SDK's in-memory `Client(build_server(settings, backend))`, one "
        "process a side and run (so load time and peak RSS are each side's own), sides interleaved run by run. "
        "'Outside the engine' = tool call wall time - `backend.chat` time: media read and decode, service, MCP.",
        "- Reference rows: one process a side and run; stages from timers only (a wrapper on `get_image_features`, a "
        "StoppingCriteria noting the first token). Compare and video give the reference the exact prompt text the "
        "server built (image labels, measured pixel differences, frame times), so the work and the prompt are the same; "
        "video frames are decoded by transformers' own `load_video` (PyAV, uniform sampling).",
        f"- Runs: {config['runs']} for describe rows and the server's born-digital OCR; {config['slow_runs']} for the "
        "slow rows (session, scanned OCR, compare, video, the reference's born-digital OCR). Medians over runs; "
        "stages are from the median run.",
        f"- Born-digital OCR: the server reads the text layer; the reference renders pages at 150 dpi and reads "
        f"{config['ocr_reference_pages']} of the {config['digital_pages']} pages through the model, and its time is "
        f"scaled to {config['digital_pages']} pages (the pages are alike: same size, same tiles, same output length).",
        "",
        "## Results",
        "",
        "Ratio = server time / reference time (below 1: the server is faster).",
        "",
        "| row | server s | reference s | server / reference | greedy outputs (run 1) |",
        "|---|---|---|---|---|",
    ]
    details: list[str] = []
    summaries: dict[str, Any] = {}
    cold = results.get("cold_start")
    if cold:
        mv, bare = statistics.median(cold["mcp-vision"]), statistics.median(cold["bare SDK server"])
        lines.append(f"| cold start to tools/list (vs a bare SDK server, n={len(cold['mcp-vision'])}) | {mv:.2f} | "
                     f"{bare:.2f} (bare) | {mv / bare:.2f} | - |")
    loads = {"server": [], "reference": []}
    rss = {"server": [], "reference": []}
    for row in results["rows"].values():
        for side in loads:
            loads[side] += [r["load_seconds"] for r in row.get(side, [])]
            rss[side] += [r["rss_after_load_mb"] for r in row.get(side, [])]
    if loads["server"] and loads["reference"]:
        sl, rl = statistics.median(loads["server"]), statistics.median(loads["reference"])
        lines.append(f"| model load: import torch + transformers, load weights (median of {len(loads['server'])} / "
                     f"{len(loads['reference'])} processes; RSS after load {statistics.median(rss['server']):.0f} / "
                     f"{statistics.median(rss['reference']):.0f} MB) | {sl:.2f} | {rl:.2f} | {sl / rl:.2f} | - |")
    for key, row in results["rows"].items():
        row_lines, summary = _row_tables(key, row, config)
        details += row_lines
        summaries[key] = summary
        title = row["title"]
        if key == "describe":
            title += f" ({config.get('describe_tiles', config['tiles'])}-tile budget)"
        elif key in {"session", "ocr_scanned", "compare"}:
            title += f" ({config['tiles']}-tile budget)"
        lines.append(f"| {title} | {_f(summary['server'])} | {_f(summary['reference'])} | "
                     f"{_ratio(summary['server'], summary['reference'])} | {summary['greedy']} |")
        for i, (sv, rv) in enumerate(summary.get("follow_ups", []), start=1):
            lines.append(f"| - follow-up {i} on the session image | {_f(sv)} | {_f(rv)} | {_ratio(sv, rv)} "
                         f"(**{rv / sv:.1f}x faster**) | |")
    lines += ["", "## Targets (issue 8)", ""]
    if "describe_1" in summaries or "describe" in summaries:
        for key in ("describe_1", "describe"):
            s = summaries.get(key)
            if s and s["server"] and s["reference"]:
                ratio = round(s["server"] / s["reference"], 2)
                budget = "1 tile" if key == "describe_1" else f"{config.get('describe_tiles', config['tiles'])}-tile budget"
                lines.append(f"- First describe call with the model loaded, {budget}: "
                             f"server / reference = {ratio:.2f} (target <= 1.1: {'met' if ratio <= 1.1 else 'NOT met'}).")
    follow = summaries.get("session", {}).get("follow_ups", [])
    for i, (sv, rv) in enumerate(follow, start=1):
        speedup = round(rv / sv, 1)
        lines.append(f"- Follow-up {i} on a session image: {speedup:.1f}x faster than the reference re-running the "
                     f"history (target >= 5x: {'met' if speedup >= 5 else 'NOT met'}).")
    lines += ["", "## Rows in detail", ""] + details
    if results.get("ceiling"):
        lines += _ceiling(results["ceiling"])
    loadavgs = [r["info"].get("loadavg", [0, 0]) for row in results["rows"].values() for side in ("server", "reference")
                for r in row.get(side, [])]
    lines += ["## Notes", ""]
    if loadavgs:
        flat = [x for pair in loadavgs for x in pair]
        lines.append(f"- Noise: the 1-minute load average ranged {min(flat):.1f} to {max(flat):.1f} across the "
                     f"benchmark's processes on {m.get('cores')} cores; other sessions' work shares this machine, so "
                     "single timings can be off by tens of percent. Sides are interleaved run by run so noise hits both.")
    lines.append("- Random weights: the answers are meaningless tokens; everything else (prompt layout, image tokens, "
                 "tiling, caching, generation length) is real, so the time per tile and per token is the real one.")
    lines.append("- Greedy outputs are compared token by token between the two sides' first runs, on the same prompts. "
                 "Both run bf16, but not the same arithmetic: the server decodes on PyTorch's matrix-vector kernels "
                 "(the reference on oneDNN's, which round a few `lm_head` logits differently in the last bit), attends in "
                 "float32 at decode steps, batches scanned pages (left-padded), and a "
                 "session's follow-up prefills only its new tokens over the cached KV. With random weights, bf16 logits "
                 "are often near-ties, so greedy paths can part at one step; the per-step agreement (the reference given the "
                 "server's prefix at each step, teacher-forced) shows how often the reference would pick the server's token. "
                 "The test suite proves exact equality in float32 of the caches, of batched and single answers and of the "
                 "decode attention against sdpa.")
    lines.append("")
    if previous and ANALYSIS_START in previous and ANALYSIS_END in previous:
        kept = previous[previous.index(ANALYSIS_START): previous.index(ANALYSIS_END) + len(ANALYSIS_END)]
        lines += [kept, ""]
    return "\n".join(lines)


__all__ = ["render", "ANALYSIS_START", "ANALYSIS_END"]
