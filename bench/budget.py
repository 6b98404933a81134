"""Time budgets and cancellation, measured on InternVL3-1B's widths (random weights) through the real server.

`python -m bench.budget [--layers 4] [--budget 25]` runs, in one process, with MCP_VISION_CALL_BUDGET set:
- how close each tool lands to its budget: a 12-page scanned PDF (ocr_document), a 32-frame video_qa and a
  default describe_image, each with what it returned (pages, truncated/next_pages, `budget`);
- how long the next describe waits after a cancelled call: alone, right after a 24-page scanned OCR
  cancelled 8 s in, and right after a video_qa cancelled 3 s in (the client's own cancellation:
  `notifications/cancelled`).
Prints a Markdown report naming the CPU; writes it to .bench-cache/BUDGET.md too. Timings are wall clock on
a shared machine: read them as a run, not a constant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"


async def _run(layers: int, budget: float) -> dict:
    import anyio
    from mcp import Client

    from bench import media
    from bench.model import ensure_model
    from bench.run import machine
    from mcp_vision.server import build_server
    from mcp_vision.settings import Settings

    model, _ = ensure_model(CACHE, layers)
    work = Path(tempfile.mkdtemp(prefix="mcp-vision-budget-"))
    scan12 = media.scanned_pdf(work / "scan12.pdf", pages=12)
    scan24 = media.scanned_pdf(work / "scan24.pdf", pages=24)
    clip = media.video(work / "clip.mp4")
    photo = work / "photo.png"
    media.photo().save(photo)
    settings = Settings(model=str(model), device="cpu", allowed_dirs=(work,), call_budget=budget)
    report: dict = {"machine": machine(), "layers": layers, "budget": budget, "rows": [], "cancel": []}

    async with Client(build_server(settings)) as client:
        warm = await client.call_tool("describe_image", {"image": str(photo), "max_tiles": 1, "max_new_tokens": 4,
                                                         "time_budget": 600})
        assert not warm.is_error, warm.content[0].text

        async def timed(tool: str, args: dict) -> tuple[float, dict]:
            started = time.monotonic()
            result = await client.call_tool(tool, args)
            took = time.monotonic() - started
            if result.is_error:
                return took, {"error": result.content[0].text}
            return took, result.structured_content

        for name, tool, args in [
            ("ocr_document, 12 scanned pages", "ocr_document", {"document": str(scan12)}),
            ("video_qa, 32 frames", "video_qa", {"video": str(clip), "num_frames": 32}),
            ("describe_image, default tiles", "describe_image", {"image": str(photo)}),
        ]:
            took, data = await timed(tool, args)
            row = {"row": name, "seconds": round(took, 2), "ratio_to_budget": round(took / budget, 3)}
            if "error" in data:
                row["error"] = data["error"]
            elif tool == "ocr_document":
                row.update(pages=len(data["pages"]), truncated=data["truncated"], next_pages=data.get("next_pages"))
            else:
                row.update(budget=data.get("budget"), finish_reason=data.get("finish_reason"))
            report["rows"].append(row)

        describe = {"image": str(photo), "max_tiles": 1, "max_new_tokens": 8, "time_budget": 600}
        alone, _ = await timed("describe_image", describe)
        report["cancel"].append({"case": "describe alone", "seconds": round(alone, 2)})
        for case, tool, args, after in [
            ("after a 24-page OCR cancelled at 8 s", "ocr_document", {"document": str(scan24), "time_budget": 600}, 8.0),
            ("after a video_qa cancelled at 3 s", "video_qa", {"video": str(clip), "num_frames": 32, "time_budget": 600}, 3.0),
        ]:
            with anyio.move_on_after(after):
                await client.call_tool(tool, args)
            took, _ = await timed("describe_image", describe)
            report["cancel"].append({"case": case, "seconds": round(took, 2), "extra": round(took - alone, 2)})
    return report


def _markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# Time budgets and cancellation ({report['layers']}+{report['layers']} layers, budget {report['budget']:g} s)",
        "",
        f"Machine: {m.get('cpu')} ({m.get('cores')} cores, flags {', '.join(m.get('flags', [])) or 'none listed'}), "
        f"torch {m.get('torch')}, transformers {m.get('transformers')}.",
        "",
        "| call | seconds | / budget | returned |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        returned = row.get("error") or ", ".join(
            f"{k}={json.dumps(v)}" for k, v in row.items() if k not in {"row", "seconds", "ratio_to_budget"}
        )
        lines.append(f"| {row['row']} | {row['seconds']} | {row['ratio_to_budget']} | {returned} |")
    lines += ["", "| next describe (1 tile, 8 tokens) | seconds | extra over alone |", "|---|---|---|"]
    for row in report["cancel"]:
        lines.append(f"| {row['case']} | {row['seconds']} | {row.get('extra', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import anyio

    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4, help="vision and text layers (24 is the real depth)")
    parser.add_argument("--budget", type=float, default=25.0, help="MCP_VISION_CALL_BUDGET for the run (seconds)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    report = anyio.run(_run, args.layers, args.budget)
    text = _markdown(report)
    CACHE.mkdir(exist_ok=True)
    (CACHE / "BUDGET.md").write_text(text)
    (CACHE / "budget.json").write_text(json.dumps(report, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
