"""One benchmark process: one row, one side (server or reference), one run. Writes its result as JSON.

    python -m bench.side SPEC.json OUT.json

Each side runs in its own process so that peak RSS and load time belong to it alone.

The server side is mcp-vision itself: `build_server(settings, backend)` driven by the SDK's in-memory
`Client` (real tool calls, schemas, validation, progress; no stdio pipe), with the stock
`PyTorchBackend` (any supported family) wrapped only to (1) fix the output length, min_new_tokens = max_new_tokens (OCR
otherwise asks for up to 1,024 tokens), and (2) keep each `ChatResult` (stages, greedy ids).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from .timing import Call, ProcessResult, current_rss_mb, peak_rss_mb, reset_peak_rss

QUESTIONS = {
    "describe": "Describe this image in detail.",
    "follow_up_1": "What colours are the shapes, and where is each one?",
    "follow_up_2": "Quote any text you can read, exactly.",
    "compare": "What changed between the two images?",
    "video": "What happens in this video?",
}
STORY = "Write a long story about a lighthouse keeper and a storm."


# ---------------------------------------------------------------------------------------------- server


def _layout(turn: Any) -> list[dict[str, Any]]:
    from mcp_vision.backend.base import ImagePart

    return [{"image": 1, "max_tiles": p.max_tiles} if isinstance(p, ImagePart) else {"text": p} for p in turn.parts]


def _recording_backend(settings: Any, tokens: int) -> Any:
    if settings.backend == "openvino":
        from mcp_vision.backend.openvino.engine import OpenVINOBackend as Engine
    else:
        from mcp_vision.backend.pytorch.engine import PyTorchBackend as Engine

    class RecordingBackend(Engine):
        """The stock backend with a fixed output length; keeps every ChatResult for the benchmark."""

        records: list[tuple[list[dict[str, Any]], Any]]

        def chat(self, turns: Any, job: Any, **kwargs: Any) -> Any:
            kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = tokens
            result = super().chat(turns, job, **kwargs)
            self.records.append((_layout(turns[-1]), result))
            return result

        def chat_batch(self, conversations: Any, job: Any, **kwargs: Any) -> Any:
            kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = tokens
            results = super().chat_batch(conversations, job, **kwargs)
            self.records.extend((_layout(turns[-1]), r) for turns, r in zip(conversations, results))
            return results

    backend = RecordingBackend(settings)
    backend.records = []
    return backend


def _chat_call(label: str, seconds: float, chats: list[tuple[list[dict[str, Any]], Any]]) -> Call:
    # The answers of one batch share its timings: each counts for 1/batch_size of them.
    stages: dict[str, float] = {}
    for _, r in chats:
        for key, value in r.stages.items():
            stages[key] = stages.get(key, 0.0) + value / r.batch_size
    engine = sum(r.seconds / r.batch_size for _, r in chats)
    stages["outside_engine"] = seconds - engine
    return Call(
        label=label,
        seconds=seconds,
        engine_seconds=engine,
        stages=stages,
        prompt_tokens=sum(r.prompt_tokens for _, r in chats),
        image_tokens=sum(r.image_tokens for _, r in chats),
        output_tokens=sum(r.output_tokens for _, r in chats),
        cached_tokens=sum(r.cached_tokens for _, r in chats),
        images_encoded=sum(r.images_encoded for _, r in chats),
        ids=list(chats[0][1].output_ids) if chats else [],
        chats=len(chats),
        extra={
            "ids_per_chat": [list(r.output_ids) for _, r in chats],
            "layout": chats[0][0] if chats else None,
            "tiles": [list(r.tiles) for _, r in chats],
            "stages_per_chat": [dict(r.stages) for _, r in chats],
            "generate_calls": round(sum(1 / r.batch_size for _, r in chats)),
        },
    )


async def _server(spec: dict[str, Any], result: ProcessResult) -> None:
    from mcp import Client

    from mcp_vision.server import build_server
    from mcp_vision.service import VisionService
    from mcp_vision.settings import Settings

    media, tokens, row = spec["media"], spec["tokens"], spec["row"]
    engine: dict[str, Any] = {}
    if spec.get("engine") == "openvino":  # bench/openvino.py: the OpenVINO engine with the server's defaults
        engine = {"backend": "openvino", "openvino_cache": Path(spec["openvino_cache"]), "threads": spec.get("threads", 0),
                  **{k: spec[k] for k in ("openvino_weights", "openvino_vision") if k in spec}}
    settings = Settings(
        model=spec["model"],
        device="cpu",
        quantization=spec.get("quantization", "none"),
        dtype=spec.get("dtype", "auto"),
        allowed_dirs=(Path(media["photo"]).parent,),
        max_tiles=spec["tiles"],
        max_new_tokens=tokens,
        call_budget=0,  # the same work on both sides: no time budget reducing tiles, frames or pages
        **engine,
    )
    backend = _recording_backend(settings, tokens)
    service = VisionService(settings, backend)
    server = build_server(service=service)

    async def progress(_p: float, _t: float | None, _m: str | None) -> None:
        return None

    async with Client(server) as client:
        started = time.perf_counter()
        await service.preload()
        result.load_seconds = time.perf_counter() - started
        result.rss_after_load_mb = current_rss_mb()
        result.info["load_peak_rss_mb"] = peak_rss_mb()
        reset_peak_rss()
        if spec.get("onednn_decode"):
            backend.native_decode = False
        result.info.update(dtype=backend.dtype, quantization=backend.quantization, device=backend.device,
                           native_decode=getattr(backend, "native_decode", None))

        async def tool(name: str, arguments: dict[str, Any], label: str) -> tuple[dict[str, Any], Call]:
            before = len(backend.records)
            started = time.perf_counter()
            answer = await client.call_tool(name, arguments, progress_callback=progress)
            seconds = time.perf_counter() - started
            if answer.is_error:
                raise RuntimeError(f"{name} failed: {answer.content}")
            return answer.structured_content or {}, _chat_call(label, seconds, backend.records[before:])

        if row == "decode":  # the engine alone, text only: the decode ceiling's measurement
            from mcp_vision.backend.base import Turn
            from mcp_vision.worker import Job

            for i in range(spec.get("calls", 2)):
                started = time.perf_counter()
                r = backend.chat([Turn.user(STORY)], Job(), max_new_tokens=tokens)
                result.calls.append(_chat_call(f"story {i + 1}", time.perf_counter() - started, backend.records[-1:]))
            result.info["bytes_per_token"] = (
                openvino_bytes_per_token(backend) if settings.backend == "openvino" else weight_bytes_per_token(backend._model)
            )
            result.info["output_text"] = r.text[:120]
            return
        if row in {"describe_1", "describe"}:
            arguments = {"image": media["photo"], "question": QUESTIONS["describe"], "max_new_tokens": tokens}
            if row == "describe_1":
                arguments["max_tiles"] = 1
            _, call = await tool("describe_image", arguments, "describe")
            result.calls.append(call)
            if spec.get("warm"):
                _, call = await tool("describe_image", {**arguments, "image": media["photo_b"]}, "second call (another image)")
                call.extra["aside"] = True
                result.calls.append(call)
        elif row == "session":
            data, call = await tool(
                "describe_image",
                {"image": media["photo"], "question": QUESTIONS["describe"], "max_new_tokens": tokens},
                "turn 1: describe",
            )
            result.calls.append(call)
            for k in (1, 2):
                _, call = await tool(
                    "follow_up",
                    {"session_id": data["session_id"], "question": QUESTIONS[f"follow_up_{k}"], "max_new_tokens": tokens},
                    f"turn {k + 1}: follow-up",
                )
                result.calls.append(call)
        elif row in {"ocr_digital", "ocr_scanned"}:
            document = media["digital_pdf" if row == "ocr_digital" else "scanned_pdf"]
            data, call = await tool("ocr_document", {"document": document}, "ocr_document")
            call.extra["methods"] = sorted({p["method"] for p in data.get("pages", [])})
            call.extra["pages"] = len(data.get("pages", []))
            result.calls.append(call)
        elif row == "compare":
            arguments = {"images": [media["photo"], media["photo_changed"]], "question": QUESTIONS["compare"], "max_new_tokens": tokens}
            _, call = await tool("compare_images", arguments, "compare_images")
            result.calls.append(call)
        elif row == "video":
            arguments = {"video": media["video"], "question": QUESTIONS["video"], "num_frames": 8, "max_new_tokens": tokens}
            _, call = await tool("video_qa", arguments, "video_qa")
            result.calls.append(call)
        else:
            raise ValueError(f"unknown row {row!r}")


def openvino_bytes_per_token(backend: Any) -> dict[str, Any]:
    """Bytes one decode step reads under OpenVINO: the compressed language model's weights file, which holds
    every layer, the final norm and `lm_head` (embeddings are a separate model, one row read a step)."""
    total = Path(backend._manifest_dir, "language.bin").stat().st_size
    return {"total": total, "layers": total, "lm_head": 0, "head_dtype": backend._settings.openvino_weights}


def weight_bytes_per_token(model: Any) -> dict[str, Any]:
    """Bytes of weights one decode step reads: every language-model layer, the final norm and `lm_head`
    (the embedding lookup reads one row). NF4 layers count their packed weights and quantization state."""
    import torch

    def module_bytes(module: Any) -> int:
        total = 0
        for sub in module.modules():
            for p in sub.parameters(recurse=False):
                total += p.numel() * p.element_size()
            for b in sub.buffers(recurse=False):
                total += b.numel() * b.element_size()
            state = getattr(getattr(sub, "weight", None), "quant_state", None)
            if state is not None:
                for t in (getattr(state, "absmax", None), getattr(state, "code", None)):
                    if isinstance(t, torch.Tensor):
                        total += t.numel() * t.element_size()
                nested = getattr(state, "state2", None)
                if nested is not None:
                    for t in (getattr(nested, "absmax", None), getattr(nested, "code", None)):
                        if isinstance(t, torch.Tensor):
                            total += t.numel() * t.element_size()
        return total

    language = model.model.language_model
    layers = module_bytes(language.layers) + module_bytes(language.norm)
    head = model.lm_head.weight
    head_bytes = head.numel() * head.element_size()
    params = sum(p.numel() for p in language.layers.parameters())
    return {"layers": layers, "lm_head": head_bytes, "total": layers + head_bytes, "layer_params": params,
            "head_dtype": str(head.dtype).removeprefix("torch.")}


# ---------------------------------------------------------------------------------------------- reference


def _reference(spec: dict[str, Any], result: ProcessResult) -> None:
    from .reference import Reference, load_image, load_video, render_page, user_message

    media, tokens, row, tiles = spec["media"], spec["tokens"], spec["row"], spec["tiles"]
    server_ids: list[list[int]] = list(spec.get("server_ids") or [])

    def other(index: int) -> list[int] | None:
        return server_ids[index] if index < len(server_ids) else None

    ref = Reference(spec["model"])
    result.load_seconds = ref.load()
    result.rss_after_load_mb = current_rss_mb()
    result.info["load_peak_rss_mb"] = peak_rss_mb()
    reset_peak_rss()
    describe = [{"image": 1}, {"text": QUESTIONS["describe"]}]

    if row in {"describe_1", "describe"}:
        patches = 1 if row == "describe_1" else tiles
        image, seconds = load_image(media["photo"])
        _, call = ref.generate([user_message(describe)], images=[image], max_patches=patches, new_tokens=tokens,
                               label="describe", media_seconds=seconds, compare_ids=other(0))
        result.calls.append(call)
        if spec.get("warm"):
            image, seconds = load_image(media["photo_b"])
            _, call = ref.generate([user_message(describe)], images=[image], max_patches=patches, new_tokens=tokens,
                                   label="second call (another image)", media_seconds=seconds, compare_ids=other(1))
            call.extra["aside"] = True
            result.calls.append(call)
    elif row == "session":
        image, seconds = load_image(media["photo"])
        messages = [user_message(describe)]
        for turn in range(3):
            label = "turn 1: describe" if turn == 0 else f"turn {turn + 1}: follow-up"
            # The whole history again: the processor re-tiles the image, generate re-encodes and re-prefills.
            answer, call = ref.generate(messages, images=[image], max_patches=tiles, new_tokens=tokens, label=label,
                                        media_seconds=seconds if turn == 0 else 0.0, compare_ids=other(turn))
            result.calls.append(call)
            if other(turn) is not None:
                # The server's answer goes into the history, so both sides see the same prompts every turn
                # (same work: a re-run of the whole history either way).
                answer = ref.processor.decode(other(turn), skip_special_tokens=True)
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            if turn < 2:
                messages.append(user_message([{"text": QUESTIONS[f"follow_up_{turn + 1}"]}]))
    elif row in {"ocr_digital", "ocr_scanned"}:
        document = media["digital_pdf" if row == "ocr_digital" else "scanned_pdf"]
        pages = spec["pages"]
        prompt = [{"image": 1}, {"text": spec["ocr_prompt"]}]
        for number in range(1, pages + 1):
            image, seconds = render_page(document, number, spec.get("dpi", 150))
            _, call = ref.generate([user_message(prompt)], images=[image], max_patches=tiles, new_tokens=tokens,
                                   label=f"page {number}", media_seconds=seconds, compare_ids=other(number - 1))
            result.calls.append(call)
        result.info["pages_measured"] = pages
    elif row == "compare":
        layout = spec.get("layout") or [{"image": 1}, {"image": 1}, {"text": QUESTIONS["compare"]}]
        images, media_seconds = [], 0.0
        for name in ("photo", "photo_changed"):
            image, seconds = load_image(media[name])
            images.append(image)
            media_seconds += seconds
        patches = next((p.get("max_tiles", tiles) for p in layout if "image" in p), tiles)
        _, call = ref.generate([user_message(layout)], images=images, max_patches=patches, new_tokens=tokens,
                               label="compare", media_seconds=media_seconds, compare_ids=other(0))
        result.calls.append(call)
    elif row == "video":
        layout = spec.get("layout") or [{"text": QUESTIONS["video"]}]
        question = next((p["text"] for p in reversed(layout) if "text" in p), QUESTIONS["video"])
        frames, seconds = load_video(media["video"], 8)
        _, call = ref.generate([user_message([{"video": 1}, {"text": question}])], videos=[frames], new_tokens=tokens,
                               label="video", media_seconds=seconds, compare_ids=other(0))
        result.calls.append(call)
    else:
        raise ValueError(f"unknown row {row!r}")


# ---------------------------------------------------------------------------------------------- bandwidth


def measure_bandwidth(gib: float = 1.0, repeats: int = 7) -> dict[str, Any]:
    """Memory read and copy bandwidth over buffers far larger than the caches, with torch's threads."""
    import torch

    n = int(gib * 2**30) // 4
    x = torch.ones(n, dtype=torch.float32)
    y = torch.empty_like(x)
    read, copy = [], []
    x.sum()
    y.copy_(x)
    for _ in range(repeats):
        started = time.perf_counter()
        x.sum()
        read.append(x.nbytes / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        y.copy_(x)
        copy.append(2 * x.nbytes / (time.perf_counter() - started) / 1e9)
    return {"read_gbs": read, "copy_gbs": copy, "threads": torch.get_num_threads(), "buffer_gib": gib}


# ---------------------------------------------------------------------------------------------- entry


def run(spec: dict[str, Any]) -> ProcessResult:
    result = ProcessResult(side=spec["side"], row=spec["row"], run=spec.get("run", 1))
    if spec["row"] == "bandwidth":
        result.info.update(measure_bandwidth())
    elif spec["side"] == "server":
        import anyio

        anyio.run(_server, spec, result)
    else:
        _reference(spec, result)
    work = peak_rss_mb()  # since the reset after loading (VmHWM)
    result.info["work_peak_rss_mb"] = work
    result.peak_rss_mb = max(work, result.info.get("load_peak_rss_mb", 0.0))
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.side SPEC.json OUT.json", file=sys.stderr)
        return 2
    reset_peak_rss()  # Linux keeps the parent's peak in ru_maxrss across exec; this process measures its own VmHWM
    spec = json.loads(Path(args[0]).read_text())
    result = run(spec)
    Path(args[1]).write_text(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
