"""A CPU user's first calls, measured from outside: the real server over stdio with default settings (`auto`, the
openvino extra installed) and an EMPTY conversion cache, on InternVL3-1B's architecture (random weights).

What it times: the first describe_image (answered by the PyTorch engine while the model converts to OpenVINO in the
background), follow-ups meanwhile (which engine answered each, and how long it took), the moment calls move to
OpenVINO, and a describe_image after that. Prints a Markdown table with the CPU named.

    python -m bench.first_hour [--layers 24] [--budget 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent


async def run(model: Path, budget: float, poll: float) -> list[tuple[str, str, float, float]]:
    """(what, engine, seconds the call took, seconds since the first call began) for each call."""
    from mcp import Client, StdioServerParameters
    from PIL import Image, ImageDraw

    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as work:
        media = Path(work) / "media"
        media.mkdir()
        picture = Image.new("RGB", (800, 600), "white")
        ImageDraw.Draw(picture).rectangle([100, 100, 400, 350], fill="#d33")
        picture.save(media / "picture.png")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_VISION_")}
        env.update(MCP_VISION_MODEL=str(model), MCP_VISION_ALLOWED_DIRS=str(media), HF_HUB_OFFLINE="1",
                   MCP_VISION_OPENVINO_CACHE=str(Path(work) / "openvino"), MCP_VISION_CALL_BUDGET=f"{budget:g}")
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_vision"], env=env, cwd=str(media))
        async with Client(params) as client:
            began = time.monotonic()

            async def call(what: str, tool: str, arguments: dict) -> dict:
                started = time.monotonic()
                result = await client.call_tool(tool, arguments)
                took = time.monotonic() - started
                structured = result.structured_content or {}
                engine = "error: " + result.content[0].text[:80] if result.is_error else structured.get("engine", "?")
                rows.append((what, engine, took, time.monotonic() - began))
                print(f"[first-hour] {what}: {engine}, {took:.1f} s (at {rows[-1][3]:.0f} s)", file=sys.stderr)
                return structured

            first = await call("first describe_image", "describe_image", {"image": "picture.png"})
            session = first.get("session_id")
            while rows[-1][1] != "openvino" and time.monotonic() - began < 3600:
                await anyio.sleep(poll)
                arguments = {"session_id": session, "question": "And the colour?"} if session else None
                if arguments:
                    await call("follow_up", "follow_up", arguments)
                else:
                    first = await call("describe_image", "describe_image", {"image": "picture.png"})
                    session = first.get("session_id")
            await call("describe_image after the move", "describe_image", {"image": "picture.png"})
            manifests = list((Path(work) / "openvino").rglob("mcp_vision_openvino.json"))
            if manifests:
                seconds = json.loads(manifests[0].read_text()).get("seconds")
                rows.append(("(the conversion itself, in the background)", "openvino convert", float(seconds or 0), 0.0))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_hour", description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24, help="vision and text layers (24: InternVL3-1B's own)")
    parser.add_argument("--budget", type=float, default=50.0, help="the call budget (MCP_VISION_CALL_BUDGET)")
    parser.add_argument("--poll", type=float, default=20.0, help="seconds between follow-ups while converting")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache")
    args = parser.parse_args(argv)
    from .model import ensure_model
    from .run import machine

    model, _ = ensure_model(args.cache, args.layers)
    rows = anyio.run(run, model, args.budget, args.poll)
    info = machine()
    print(f"\nInternVL3-1B architecture, {args.layers}+{args.layers} layers, random weights; call budget "
          f"{args.budget:g} s; CPU: {info.get('cpu')} ({', '.join(info.get('flags', []))}), {os.cpu_count()} cores\n")
    print("| call | engine | seconds | at (s) |\n|---|---|---:|---:|")
    for what, engine, took, at in rows:
        print(f"| {what} | {engine} | {took:.1f} | {at:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
