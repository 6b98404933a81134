"""The real InternVL backend on the tiny random-weight model: precision paths, tiling, determinism."""

from __future__ import annotations

import pytest
from PIL import Image

from mcp_vision.backend.base import ImagePart, Turn
from mcp_vision.backend.pytorch.engine import PyTorchBackend
from mcp_vision.backend.pytorch.families import INTERNVL
from mcp_vision.errors import InputError, ModelUnavailableError
from mcp_vision.settings import Settings
from mcp_vision.worker import Job

from .support.wrapping import Wrapping


def _turns(question: str = "Describe.", size=(448, 448), color="red", max_tiles: int = 1) -> list[Turn]:
    return [Turn.user(question, [Image.new("RGB", size, color)], max_tiles=max_tiles)]


def test_nf4_on_cpu_quantizes_the_language_model_only(tiny_model_dir):
    import bitsandbytes as bnb
    import torch

    backend = PyTorchBackend(
        Settings(model=str(tiny_model_dir), device="cpu", quantization="nf4", dtype="bfloat16")
    )
    result = backend.chat(_turns(), Job(), max_new_tokens=4)
    model = backend._model
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "no Linear4bit layer: the 4-bit path did not take effect"
    assert all(n.startswith("model.language_model.") for n in quantized)
    # Every projection of every language-model layer is 4-bit: 7 per layer x 2 layers.
    assert len(quantized) == 14
    for prefix in INTERNVL.keep_unquantized:
        kept = [m for n, m in model.named_modules() if n.startswith(prefix) and isinstance(m, torch.nn.Linear)]
        assert kept and not any(isinstance(m, bnb.nn.Linear4bit) for m in kept), prefix
    assert backend.quantization == "nf4" and backend.device == "cpu"
    assert result.output_tokens >= 1 and result.tiles == [1]


@pytest.mark.parametrize(("bf16_slow", "dtype"), [(False, "bfloat16"), (True, "float32")])
def test_cpu_auto_chooses_the_faster_precision_without_quantization(tiny_model_dir, monkeypatch, bf16_slow, dtype):
    """bf16 where the CPU computes in it natively, float32 where bf16 products are emulated (cpu_speed.py)."""
    import torch

    from mcp_vision.backend.pytorch import cpu_speed

    monkeypatch.setattr(cpu_speed, "bf16_is_slow", lambda: bf16_slow)
    backend = PyTorchBackend(Settings(model=str(tiny_model_dir), device="cpu"))
    assert backend.compute_rate() is None  # nothing measured before loading
    backend.load(Job())
    assert (backend.device, backend.quantization, backend.dtype) == ("cpu", "none", dtype)
    assert next(backend._model.parameters()).dtype == getattr(torch, dtype)
    assert backend.compute_rate() > 1e8  # FLOP/s of the model's precision, measured once loaded


def test_bf16_is_called_slow_by_its_measured_speed(monkeypatch):
    """The precision follows the timed products, not a fixed belief about CPUs."""
    import torch

    from mcp_vision.backend.pytorch import cpu_speed

    rates = {torch.float32: 40e9, torch.bfloat16: 5e9}
    monkeypatch.setattr(cpu_speed, "matmul_rate", lambda dtype, **_: rates[dtype])
    monkeypatch.setattr(cpu_speed, "_measured", {})  # nothing measured before: the patched rates are read
    cpu_speed.bf16_is_slow.cache_clear()
    try:
        assert cpu_speed.bf16_is_slow() and cpu_speed.cpu_dtype() == torch.float32
        rates[torch.bfloat16] = 60e9  # AMX
        cpu_speed._measured.clear()
        cpu_speed.bf16_is_slow.cache_clear()
        assert not cpu_speed.bf16_is_slow() and cpu_speed.cpu_dtype() == torch.bfloat16
    finally:
        cpu_speed.bf16_is_slow.cache_clear()


def test_matmul_rate_is_measured():
    import torch

    from mcp_vision.backend.pytorch.cpu_speed import matmul_rate

    assert 1e8 < matmul_rate(torch.float32, window=0.01, windows=1) < 1e14


def test_greedy_output_is_deterministic(tiny_backend):
    a = tiny_backend.chat(_turns(max_tiles=2), Job(), max_new_tokens=6)
    b = tiny_backend.chat(_turns(max_tiles=2), Job(), max_new_tokens=6)
    assert a.text == b.text and a.output_tokens == b.output_tokens


def test_tiles_follow_the_stock_processor(tiny_backend):
    wide = tiny_backend.chat(_turns(size=(1344, 448), max_tiles=6), Job(), max_new_tokens=1)
    single = tiny_backend.chat(_turns(size=(1344, 448), max_tiles=1), Job(), max_new_tokens=1)
    assert wide.tiles == [4]  # 3x1 grid + thumbnail
    assert wide.image_tokens == 4 * 256
    assert single.tiles == [1] and single.image_tokens == 256


def test_min_new_tokens_forces_equal_work(tiny_backend):
    result = tiny_backend.chat(_turns(), Job(), max_new_tokens=5, min_new_tokens=5)
    assert result.output_tokens == 5 and result.finish_reason == "length"


def test_cancellation_stops_generation_between_tokens(tiny_backend):
    job = Job()
    job.stop.set()
    result = tiny_backend.chat(_turns(), job, max_new_tokens=50, min_new_tokens=50)
    assert result.finish_reason == "cancelled" and result.output_tokens <= 1


def test_history_is_real_chat_turns(tiny_backend):
    turns = _turns("First question?") + [Turn.assistant("First answer."), Turn.user("Second question?")]
    inputs = tiny_backend.build_inputs(turns)
    text = tiny_backend._processor.decode(inputs["input_ids"][0])
    assert text.count("<|im_start|>user") == 2 and text.count("<|im_start|>assistant") == 2
    assert text.index("First answer.") < text.index("Second question?")
    assert text.rstrip().endswith("<|im_start|>assistant")


def test_prompt_over_the_context_is_an_input_error(tiny_backend):
    with pytest.raises(InputError, match="context"):
        tiny_backend.chat(_turns(), Job(), max_new_tokens=8190)


def test_non_internvl_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    backend = PyTorchBackend(Settings(model=str(tmp_path), device="cpu"))
    with pytest.raises(ModelUnavailableError, match="not InternVL"):
        backend.load(Job())


def test_cuda_requested_without_cuda(tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    backend = PyTorchBackend(Settings(model=str(tiny_model_dir), device="cuda"))
    with pytest.raises(ModelUnavailableError, match="MCP_VISION_DEVICE"):
        backend.load(Job())


def test_inputs_match_the_stock_processor_call(tiny_backend):
    """Per-image tiling gives exactly what processor(text, images, max_patches) gives for one budget."""
    import torch

    images = [Image.new("RGB", (900, 300), "red"), Image.new("RGB", (300, 700), "blue")]
    turns = [Turn("user", [ImagePart(images[0], 4), "and", ImagePart(images[1], 4), "Compare."])]
    ours = tiny_backend.build_inputs(turns)
    processor = tiny_backend._processor
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}, {"type": "text", "text": "Compare."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    stock = processor(text=[prompt], images=images, max_patches=4, return_tensors="pt")
    assert torch.equal(ours["input_ids"], stock["input_ids"])
    assert torch.equal(torch.cat(ours["pixel_values"]), stock["pixel_values"])
    assert ours["num_patches"] == [4, 3]  # 3x1 grid + thumbnail; 1x2 grid + thumbnail


def test_each_image_keeps_its_own_tile_budget(tiny_backend):
    turns = [Turn("user", [ImagePart(Image.new("RGB", (1344, 448)), 6), ImagePart(Image.new("RGB", (1344, 448)), 1), "?"])]
    result = tiny_backend.chat(turns, Job(), max_new_tokens=1)
    assert result.tiles == [4, 1] and result.image_tokens == 5 * 256


def test_loading_and_answering_write_no_bars_or_deprecation_notes_to_stderr(tiny_model_dir, capfd):
    """stderr is the server's log: no 'Loading weights' bar, no transformers FutureWarning about its cache API."""
    import warnings

    from PIL import Image

    from mcp_vision.backend.base import Job, Turn
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.settings import Settings

    backend = PyTorchBackend(Settings(model=str(tiny_model_dir), device="cpu", quantization="none", dtype="float32"))
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        backend.load(Job())
        backend.chat([Turn.user("What is this?", [Image.new("RGB", (64, 64), "red")], max_tiles=1)], Job(),
                     max_new_tokens=2, conversation="c")
        backend.chat([Turn.user("What is this?", [Image.new("RGB", (64, 64), "red")], max_tiles=1),
                      Turn.assistant("x"), Turn.user("And now?")], Job(), max_new_tokens=2, conversation="c")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "deprecated" not in err, err


def test_an_engine_missing_a_declared_member_fails_at_construction():
    from mcp_vision.backend.base import Backend

    class NoContext(Wrapping):  # every member but one
        context_length = Backend.context_length  # the abstract declaration, not an implementation

    with pytest.raises(TypeError, match="context_length"):
        NoContext(None)
    members = {k: v for k, v in vars(Wrapping).items() if k not in {"remote", "__dict__", "__weakref__"}}
    undeclared = type("Undeclared", (Backend,), members)  # the double, never saying whether it is remote
    with pytest.raises(TypeError, match="remote"):
        undeclared(None)
