"""The OpenVINO engine on the tiny InternVL: converted once here (the real converter, in the child process
the engine uses), then every behaviour the PyTorch engine has: accuracy against float32 PyTorch within the
written thresholds, KV prefix reuse equal to recomputing, batching equal to one at a time, cancellation and
deadlines, the conversion cache, `auto`, the tools end to end, and `mcp-vision-internvl convert`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install '.[openvino]')")
pytest.importorskip("nncf", reason="the openvino extra is not installed (pip install '.[openvino]')")

from mcp_vision.backend import create_backend, openvino_candidate
from mcp_vision.backend.base import Turn
from mcp_vision.backend.openvino.convert import (
    MANIFEST,
    calibration_tiles,
    checkpoint_fingerprint,
    converted_dir,
    is_converted,
)
from mcp_vision.backend.openvino.engine import OpenVINOBackend
from mcp_vision.settings import Settings
from mcp_vision.worker import Job


def _image(color: str = "red", size=(640, 480)) -> Image.Image:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).ellipse([60, 60, 300, 260], fill="white")
    return img


@pytest.fixture(scope="session")
def ov_cache(tmp_path_factory, tiny_model_dir) -> Path:
    """Converted once by the real command line, which must keep stdout empty while the converters print."""
    cache = tmp_path_factory.mktemp("openvino-cache")
    env = {**os.environ, "MCP_VISION_OPENVINO_CACHE": str(cache), "MCP_VISION_MODEL": str(tiny_model_dir)}
    proc = subprocess.run([sys.executable, "-m", "mcp_vision", "convert"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "", f"convert wrote to stdout: {proc.stdout[:300]!r}"
    assert "calibrating the vision tower" in proc.stderr  # the steps are reported as they happen
    lines = proc.stderr.splitlines()
    noise = [line for line in lines if "warn" in line.lower() or "nncf:" in line or line.startswith("W1") or "━" in line]
    assert not noise and len(lines) <= 20, proc.stderr[-3000:]  # a few lines of progress, no framework warnings
    return cache


def _settings(model: Path, cache: Path, **extra) -> Settings:
    return Settings(model=str(model), backend="openvino", openvino_cache=cache, **extra)


@pytest.fixture(scope="session")
def ov_backend(tiny_model_dir, ov_cache) -> OpenVINOBackend:
    backend = OpenVINOBackend(_settings(tiny_model_dir, ov_cache))
    backend.load(Job())
    return backend


def test_accuracy_against_float32_pytorch_keeps_the_thresholds(tiny_model_dir, ov_cache):
    from bench.accuracy import THRESHOLDS, failures, measure

    result = measure(tiny_model_dir, ov_cache)
    assert failures(result) == [], result
    assert result["top1"], result
    assert set(THRESHOLDS) <= set(result)


def test_a_broken_engine_misses_the_thresholds(tiny_model_dir, ov_cache, monkeypatch):
    """The accuracy check can fail: vision features with their sign flipped do not pass."""
    from bench.accuracy import failures, measure

    original = OpenVINOBackend._encode_tiles
    monkeypatch.setattr(OpenVINOBackend, "_encode_tiles", lambda self, px: -original(self, px))
    assert "features_cosine" in " ".join(failures(measure(tiny_model_dir, ov_cache, tokens=4)))


# Task accuracy on the trained tiny InternVL (tests/models/trained_internvl): held-out questions with right
# answers, of the tasks the committed checkpoint has learned, asked through each engine's chat as the tools ask
# them. Unlike the cosines above (random weights, chaotic, CPU-dependent), a right answer either survives the
# conversion or it does not.
TASK_SAMPLES = 8  # per learned task


@pytest.fixture(scope="session")
def trained_task_accuracy(tmp_path_factory):
    """The learned tasks, float32 PyTorch's held-out accuracy on them (the baseline), and an OpenVINO cache."""
    from bench.accuracy import task_accuracy

    from .support.trained import LEARNED, TRAINED_DIR, held_out_accuracy

    learned = tuple(task for task, got in held_out_accuracy().items() if got["right"] >= LEARNED)
    if not learned:
        pytest.skip("the committed checkpoint answers no task yet (train one with bench/train_tiny.py)")
    cache = tmp_path_factory.mktemp("openvino-trained")
    return learned, cache, task_accuracy(TRAINED_DIR, cache, "pytorch-float32", per_task=TASK_SAMPLES, tasks=learned)


def test_int8_task_accuracy_keeps_the_floor_against_float32(trained_task_accuracy):
    from bench.accuracy import TASK_FLOORS, task_accuracy, task_failures

    from .support.trained import TRAINED_DIR

    learned, cache, base = trained_task_accuracy
    int8 = task_accuracy(TRAINED_DIR, cache, "openvino-int8", per_task=TASK_SAMPLES, tasks=learned)
    assert base["overall"] >= 0.75, base  # the baseline answers its learned tasks
    assert task_failures({"pytorch-float32": base, "openvino-int8": int8}) == [], (base, int8)
    assert TASK_FLOORS["openvino-int8"] <= 0.02


def test_a_broken_engine_misses_the_task_floor(trained_task_accuracy, monkeypatch):
    """The task floor can fail: vision features with their sign flipped lose the right answers."""
    from bench.accuracy import task_accuracy, task_failures

    from .support.trained import TRAINED_DIR

    learned, cache, base = trained_task_accuracy
    original = OpenVINOBackend._encode_tiles
    monkeypatch.setattr(OpenVINOBackend, "_encode_tiles", lambda self, px: -original(self, px))
    broken = task_accuracy(TRAINED_DIR, cache, "openvino-int8", per_task=TASK_SAMPLES, tasks=learned)
    assert task_failures({"pytorch-float32": base, "openvino-int8": broken}), (base, broken)


def test_follow_up_reuses_the_kv_prefix_with_the_same_greedy_ids(ov_backend):
    first = [Turn.user("Describe this image.", [_image()], max_tiles=2)]
    answer = ov_backend.chat(first, Job(), max_new_tokens=12, conversation="ov-reuse")
    second = [*first, Turn.assistant(answer.history_text), Turn.user("What colour is the circle?")]
    reused = ov_backend.chat(second, Job(), max_new_tokens=12, conversation="ov-reuse")
    fresh = ov_backend.chat(second, Job(), max_new_tokens=12)
    assert reused.cached_tokens > answer.prompt_tokens  # the whole first turn, image included
    assert reused.images_encoded == 0
    assert reused.output_ids == fresh.output_ids
    ov_backend.forget("ov-reuse")
    after = ov_backend.chat(second, Job(), max_new_tokens=12, conversation="ov-reuse")
    assert after.cached_tokens == 0 and after.output_ids == fresh.output_ids


def test_a_batch_answers_as_each_conversation_alone(ov_backend):
    conversations = [
        [Turn.user("Describe this image.", [_image("red")], max_tiles=2)],
        [Turn.user("Read the text.", [_image("blue", (300, 900))], max_tiles=1)],
        [Turn.user("What is this?", [_image("green", (500, 500))], max_tiles=1)],
    ]
    batch = ov_backend.chat_batch(conversations, Job(), max_new_tokens=8)
    alone = [ov_backend.chat(c, Job(), max_new_tokens=8) for c in conversations]
    assert [r.output_ids for r in batch] == [r.output_ids for r in alone]
    assert all(r.batch_size == 3 for r in batch)


def test_cancelled_before_and_during_generation(ov_backend):
    turns = [Turn.user("Describe this image.", [_image()], max_tiles=4)]
    job = Job()
    job.stop.set()
    stopped = ov_backend.chat(turns, job, max_new_tokens=16)
    assert stopped.finish_reason == "cancelled" and stopped.output_tokens == 0

    job = Job()
    job._report = lambda done, total, message: job.stop.set() if done >= 2 else None
    partial = ov_backend.chat(turns, job, max_new_tokens=64, min_new_tokens=64)
    assert partial.finish_reason == "cancelled"
    assert 1 <= partial.output_tokens < 64


def test_a_row_caught_in_a_repetition_loop_stops_and_the_others_go_on(ov_backend, monkeypatch):
    from mcp_vision import page_text

    conversations = [[Turn.user("Describe this image.", [_image(color)], max_tiles=1)] for color in ("red", "blue")]
    free = ov_backend.chat_batch(conversations, Job(), max_new_tokens=200, min_new_tokens=200)
    # The tiny random model does not loop on its own: the check fires for the first row once it holds 130 tokens.
    first = free[0].output_ids[:10]
    monkeypatch.setattr(page_text, "looping", lambda ids: len(ids) >= 130 and ids[:10] == first)
    stopped = ov_backend.chat_batch(conversations, Job(), max_new_tokens=200, min_new_tokens=200)
    assert stopped[0].output_ids == free[0].output_ids[:136] and stopped[0].finish_reason == "stop"
    assert stopped[1].output_ids == free[1].output_ids and stopped[1].output_tokens == 200


def test_generation_stops_at_the_deadline(ov_backend):
    job = Job(deadline=time.monotonic() - 1)
    result = ov_backend.chat([Turn.user("Write a long story.")], job, max_new_tokens=64, min_new_tokens=64)
    assert result.finish_reason == "time"
    assert result.output_tokens == 1


def test_the_conversion_is_reused_and_keyed_by_checkpoint_and_precision(tiny_model_dir, ov_cache, tmp_path):
    target = converted_dir(ov_cache, tiny_model_dir, "int8", "int8")
    assert is_converted(target)
    stamp = (target / "language.xml").stat().st_mtime_ns
    OpenVINOBackend(_settings(tiny_model_dir, ov_cache)).load(Job())  # a second server: no second conversion
    assert (target / "language.xml").stat().st_mtime_ns == stamp
    assert converted_dir(ov_cache, tiny_model_dir, "int4", "int8") != target
    manifest = json.loads((target / MANIFEST).read_text())  # where the time went, and how it was calibrated
    assert {"read", "vision_export", "vision_calibration", "language_compression"} <= set(manifest["stages"])
    assert manifest["calibration"] == {"tiles": 8, "smooth_quant": True, "bias_correction": True}
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(tiny_model_dir)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"image_seq_length": 256', '"image_seq_length": 256 '))
    assert checkpoint_fingerprint(copy) != checkpoint_fingerprint(tiny_model_dir)


def test_fewer_calibration_tiles_are_spread_over_every_picture(tiny_model_dir):
    import numpy as np
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    every, few = calibration_tiles(processor), calibration_tiles(processor, 8)
    assert len(few) == 8 < len(every)
    picked = [next(i for i, tile in enumerate(every) if np.array_equal(tile, chosen)) for chosen in few]
    assert picked == sorted(picked) and picked[0] == 0 and picked[-1] >= len(every) * 3 // 4


def test_auto_picks_openvino_on_a_cpu_and_pytorch_when_asked(tiny_model_dir, ov_cache):
    assert openvino_candidate(Settings())
    assert not openvino_candidate(Settings(quantization="none"))
    assert not openvino_candidate(Settings(dtype="float32"))
    assert not openvino_candidate(Settings(device="cuda"))
    assert type(create_backend(Settings(backend="local"))).__name__ == "PyTorchBackend"
    auto = create_backend(Settings(model=str(tiny_model_dir), openvino_cache=ov_cache))
    assert not auto.loaded
    auto.load(Job())
    assert auto.chosen.engine == "openvino" and auto.loaded
    result = auto.chat([Turn.user("Describe this image.", [_image()], max_tiles=1)], Job(), max_new_tokens=4)
    assert result.output_tokens >= 1


def test_auto_keeps_pytorch_for_a_checkpoint_openvino_does_not_run(tmp_path, tiny_model_dir):
    from mcp_vision.backend.auto import AutoBackend

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llava"}')
    engine = AutoBackend(Settings(model=str(other)))._choose()
    assert engine.engine == "pytorch"


def test_openvino_refuses_a_checkpoint_it_does_not_run(tmp_path):
    from mcp_vision.errors import ModelUnavailableError

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(ModelUnavailableError, match="MCP_VISION_BACKEND=local"):
        OpenVINOBackend(Settings(model=str(other), backend="openvino", openvino_cache=tmp_path)).load(Job())


def test_convert_without_the_extra_says_how_to_install(tmp_path):
    code = (
        "import sys, importlib.util as u\n"
        "real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'openvino' else real(name, *a)\n"
        "from mcp_vision import main\n"
        "sys.exit(main(['convert', '--model', %r]))\n" % str(tmp_path)
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install 'mcp-vision-internvl[openvino]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1




@pytest.mark.anyio
async def test_every_tool_answers_on_the_openvino_engine(tiny_model_dir, ov_backend, media_dir):
    from mcp import Client

    from mcp_vision.server import build_server

    settings = _settings(tiny_model_dir, ov_backend._settings.openvino_cache, allowed_dirs=(media_dir,),
                         max_new_tokens=6, max_tiles=2)
    _image().save(media_dir / "a.png")
    changed = _image()
    ImageDraw.Draw(changed).rectangle([400, 300, 520, 420], fill="black")
    changed.save(media_dir / "b.png")
    from .support.documents import scanned_pdf

    (media_dir / "scan.pdf").write_bytes(scanned_pdf([(800, 300), (800, 300)]))
    frames = [_image(c, (320, 240)) for c in ("red", "green", "blue", "yellow")]
    frames[0].save(media_dir / "clip.gif", save_all=True, append_images=frames[1:], duration=250, loop=0)

    async with Client(build_server(settings, ov_backend)) as client:
        described = await client.call_tool("describe_image", {"image": str(media_dir / "a.png"), "question": "What is it?"})
        assert not described.is_error, described.content
        assert described.content[0].type == "text"
        session = described.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": session, "question": "And the colour?"})
        assert not follow.is_error, follow.content
        assert follow.structured_content["usage"]["cached_tokens"] > 0
        compared = await client.call_tool("compare_images", {"images": [str(media_dir / "a.png"), str(media_dir / "b.png")]})
        assert not compared.is_error, compared.content
        ocr = await client.call_tool("ocr_document", {"document": str(media_dir / "scan.pdf")})
        assert not ocr.is_error, ocr.content
        assert [p["method"] for p in ocr.structured_content["pages"]] == ["vision", "vision"]
        video = await client.call_tool("video_qa", {"video": str(media_dir / "clip.gif"), "question": "What changes?",
                                                    "num_frames": 4})
        assert not video.is_error, video.content
        located = await client.call_tool("locate", {"image": str(media_dir / "a.png"), "target": "the circle"})
        assert located.content[0].type == "text"  # random weights name no box; the call still answers


@pytest.mark.anyio
async def test_auto_answers_at_once_while_converting_then_moves_to_openvino(tiny_model_dir, media_dir, tmp_path):
    """No dead wait on a CPU: from an empty conversion cache the first call is answered by the PyTorch engine
    within the default budget, the conversion goes on in the background, and a later call is answered by
    OpenVINO in the same session (measured from outside, through the real server over stdio)."""
    from mcp import Client, StdioServerParameters

    from .servers import SERVER, server_env

    Image.new("RGB", (320, 240), "green").save(media_dir / "converting.png")
    cache = tmp_path / "ov"
    # f16 vision: no calibration, so the background conversion is short; what is tested is the hand-over.
    env = server_env(tiny_model_dir, media_dir, MCP_VISION_BACKEND="auto", MCP_VISION_OPENVINO_CACHE=str(cache),
                     MCP_VISION_OPENVINO_VISION="f16", MCP_VISION_MAX_NEW_TOKENS="4", MCP_VISION_MAX_TILES="1")
    params = StdioServerParameters(command=SERVER[0], args=SERVER[1:], env=env, cwd=str(media_dir))
    async with Client(params) as client:
        started = time.monotonic()
        first = await client.call_tool("describe_image", {"image": "converting.png"})
        first_seconds = time.monotonic() - started
        assert not first.is_error, first.content
        assert first.structured_content["engine"] == "pytorch"
        assert first_seconds < 50  # the default budget (MCP_VISION_CALL_BUDGET)
        session = first.structured_content["session_id"]
        engines = []
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            later = await client.call_tool("follow_up", {"session_id": session, "question": "And the colour?"})
            assert not later.is_error, later.content
            engines.append(later.structured_content["engine"])
            if engines[-1] == "openvino":
                break
            await anyio.sleep(5)
    assert engines[-1] == "openvino", engines
    assert is_converted(converted_dir(cache, tiny_model_dir, "int8", "f16"))
