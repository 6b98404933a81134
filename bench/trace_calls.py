"""Count the module boundaries one tool call crosses inside mcp_vision, on the tiny random InternVL.

    python -m bench.trace_calls [--tool ocr_document|describe_image] [--path ROOMS] [--edges]

A dev tool for keeping a tool's path short (issue 23): it drives one call through the in-memory client (the
call is made once untraced first, so the model load and the decoder processes' start are not counted), with a
profiler on every thread, and counts Python calls whose caller and callee live in different rooms of
mcp_vision. A room is a top-level module (`service`, `ocr`, `server`, ...) or a subpackage (`backend`,
`inputs`, `viewer`): calls inside the backend or inside `inputs/` are one room's business. A coroutine's
resumption is not a call, and work in decoder processes is not seen (their functions run elsewhere).

Printed, for the call:
- `path`: the distinct caller->callee function pairs between the rooms a tool's path runs through (the server,
  the service, and ocr for ocr_document: `--path` names them), and how many of them climb (callee in a higher
  layer than its caller: server > service > ocr > the rest > backend: callbacks and reaching back up). This is
  the number issue 23 sets at most 8 for ocr_document: how often a reader following the call changes file.
- `room pairs`: the distinct caller room -> callee room pairs over every room (leaf modules such as budget,
  prompts and backend.base's data classes included), upward ones apart.
- `function crossings`: the distinct function pairs over every room; `crossing calls`: every such call event
  (repeats per page counted).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

PACKAGE = "mcp_vision"
_ASYNC_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR: frames that resume
LAYERS = {"server": 0, "service": 1, "ocr": 2, "backend": 4}  # every other room is 3


def room(module: str) -> str | None:
    """The room a module belongs to (`mcp_vision.inputs.pdf` -> `inputs`), or None outside mcp_vision."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


class Tracer:
    """A profiler (every thread) that records calls crossing rooms."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()  # (caller function, callee function) -> call events
        self._started: set[FrameType] = set()  # generator frames already entered (kept alive while tracing)
        self._lock = threading.Lock()

    def profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_flags & _ASYNC_FLAGS:
            with self._lock:
                if frame in self._started:
                    return  # a resumption, not a call
                self._started.add(frame)
        caller = frame.f_back
        if caller is None:
            return
        callee_room = room(frame.f_globals.get("__name__", ""))
        caller_room = room(caller.f_globals.get("__name__", ""))
        if callee_room is None or caller_room is None or callee_room == caller_room:
            return
        with self._lock:
            self.calls[(_name(caller), _name(frame))] += 1

    def __enter__(self) -> Tracer:
        threading.setprofile(self.profile)
        sys.setprofile(self.profile)
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]

    def climbs(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.calls if _layer(b) < _layer(a)]


def _name(frame: FrameType) -> str:
    module = frame.f_globals.get("__name__", "").removeprefix(PACKAGE + ".")
    return f"{module}.{frame.f_code.co_qualname}"


def _layer(function: str) -> int:
    return LAYERS.get(function.split(".")[0], 3)


def _document(folder: Path) -> Path:
    """Two born-digital pages and one scanned page: the text layer, the model and previews all take part."""
    import pymupdf
    from PIL import Image, ImageDraw

    doc = pymupdf.open()
    for sentence in ("The quick brown fox jumps over the lazy dog.", "Invoice number 4711 is due in March."):
        doc.new_page().insert_text((72, 100), sentence, fontsize=12)
    scan = Image.new("RGB", (800, 300), "white")
    ImageDraw.Draw(scan).text((20, 120), "SCANNED TEXT ONLY AS PIXELS", fill="black")
    buffer = io.BytesIO()
    scan.save(buffer, format="PNG")
    page = doc.new_page()
    page.insert_image(page.rect, stream=buffer.getvalue())
    path = folder / "mixed.pdf"
    doc.save(path)
    scan.save(folder / "scan.png")
    return path


async def _trace(tool: str, folder: Path) -> Tracer:
    from mcp import Client
    from mcp.client.extension import advertise

    from mcp_vision.backend import create_backend
    from mcp_vision.server import build_server
    from mcp_vision.settings import Settings
    from mcp_vision.worker import Job

    from .tiny_internvl import build_tiny_internvl

    model = build_tiny_internvl(folder / "tiny-internvl")
    media = folder / "media"
    media.mkdir()
    pdf = _document(media)
    # The tests' settings (float32 on CPU, short answers); the PyTorch engine, named, so nothing converts.
    settings = Settings(model=str(model), device="cpu", quantization="none", dtype="float32", backend="pytorch",
                        allowed_dirs=(media,), max_new_tokens=8, max_tiles=4)
    backend = create_backend(settings)
    backend.load(Job())
    arguments = (
        {"document": str(pdf), "dpi": 72, "max_new_tokens": 8} if tool == "ocr_document"
        else {"image": str(media / "scan.png")}
    )
    apps = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})  # previews too
    async with Client(build_server(settings, backend), extensions=[apps]) as client:

        async def call() -> None:
            result = await client.call_tool(tool, arguments, progress_callback=_ignore)
            if result.is_error:
                raise SystemExit(f"{tool} failed: {result.content}")

        # Profiling starts before the warm call, so the worker threads it starts are profiled too (a profiler
        # reaches only threads started after it); what the warm call did is then forgotten.
        with Tracer() as tracer:
            await call()  # warm: the decoder processes start, caches fill
            tracer.calls.clear()
            await call()
    return tracer


async def _ignore(_progress: float, _total: float | None, _message: str | None) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_calls", description=__doc__.split("\n")[0])
    parser.add_argument("--tool", default="ocr_document", choices=["ocr_document", "describe_image"])
    parser.add_argument("--edges", action="store_true", help="list each crossing pair with its call count")
    parser.add_argument("--path", default="server,service,ocr", help="the rooms of the path (comma-separated)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        tracer = asyncio.run(_trace(args.tool, Path(folder)))
    climbs = tracer.climbs()
    if args.edges:
        for (caller, callee), count in sorted(tracer.calls.items()):
            mark = "  (climbs)" if (caller, callee) in climbs else ""
            print(f"{count:4d}  {caller} -> {callee}{mark}")
    rooms = Counter((a.split(".")[0], b.split(".")[0]) for a, b in tracer.calls.elements())
    print("calls by rooms: " + ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(rooms.items())))
    up = sum(1 for a, b in rooms if LAYERS.get(b, 3) < LAYERS.get(a, 3))
    on_path = set(args.path.split(","))
    path = [(a, b) for a, b in tracer.calls if {a.split(".")[0], b.split(".")[0]} <= on_path]
    print(f"{args.tool}: path {len(path)} ({sum(1 for pair in path if pair in climbs)} upward) through {args.path}")
    print(f"{args.tool}: room pairs {len(rooms)} ({up} upward), function crossings {len(tracer.calls)} "
          f"({len(climbs)} upward), crossing calls {sum(tracer.calls.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
