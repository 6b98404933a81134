"""Loading a local checkpoint: where it is, which family it is (from its `model_type`), which device,
precision and quantization it runs with, and the per-layer cancellation checks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import Cancelled, ModelUnavailableError, summary
from .families import Family, family_for, supported

if TYPE_CHECKING:
    from ...settings import Settings
    from ..base import Job

log = logging.getLogger(__name__)

EXAMPLE = "OpenGVLab/InternVL3-2B-hf or Qwen/Qwen2-VL-2B-Instruct"


@dataclass
class Loaded:
    model: Any
    processor: Any
    family: Family
    device: str
    quantization: str
    dtype: str
    native_decode: bool  # decode steps without oneDNN (see native_gemv_is_faster)


def choose(settings: Settings) -> tuple[str, str, Any]:
    """(device, quantization, torch dtype) from settings and the hardware."""
    import torch

    device = settings.device
    found = accelerator()
    if device == "auto":
        device = found or "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(
            "MCP_VISION_DEVICE=cuda but no CUDA device is available: set MCP_VISION_DEVICE=auto or cpu."
        )
    elif device == "mps" and found != "mps":
        raise ModelUnavailableError(
            "MCP_VISION_DEVICE=mps but PyTorch sees no Apple GPU (MPS): set MCP_VISION_DEVICE=auto or cpu."
        )
    quantization = settings.quantization
    if quantization == "auto":
        # On CUDA, NF4 fits the model in little memory. On CPU, bf16 encodes images and prefills
        # 4-8x faster than NF4 (measured), which dominates a vision call. bitsandbytes has no Apple GPU kernels.
        quantization = "nf4" if device == "cuda" else "none"
    elif quantization in {"nf4", "int8"} and device == "mps":
        raise ModelUnavailableError(
            f"MCP_VISION_QUANTIZATION={quantization} needs CUDA (bitsandbytes), not an Apple GPU: set "
            "MCP_VISION_QUANTIZATION=auto or none."
        )
    if settings.dtype != "auto":
        dtype = getattr(torch, settings.dtype)
    elif device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif device == "mps":
        dtype = torch.float16  # every Apple GPU and macOS version PyTorch supports runs fp16; bf16 needs macOS 14+
    else:
        from .cpu_speed import cpu_dtype

        dtype = cpu_dtype()  # bf16 where the CPU computes in it natively, else float32 (measured: cpu_speed.py)
    return device, quantization, dtype


def accelerator() -> str | None:
    """The GPU torch can use: "cuda", else "mps" (Apple Silicon), else None."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else None


def read_config(settings: Settings) -> tuple[str, bool, Any]:
    """(what to pass to from_pretrained, local_files_only, the checkpoint's config); one error sentence when
    the configured model cannot be found or read."""
    source, local_only = locate(settings)
    from transformers import AutoConfig

    try:
        return source, local_only, AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        if not local_only and _unreachable(exc):
            from huggingface_hub import constants

            raise ModelUnavailableError(
                f"MCP_VISION_MODEL={settings.model!r} is not on this machine and {constants.ENDPOINT} could not be "
                "reached to fetch it: check the network, proxy (HTTPS_PROXY) and HF_ENDPOINT, or run "
                "`mcp-vision-internvl download` where the network works, or set MCP_VISION_MODEL to a local directory."
            ) from None
        raise ModelUnavailableError(
            f"MCP_VISION_MODEL={settings.model!r} could not be read as a model ({summary(exc, 200)}): "
            f"set it to a checkpoint of a supported family ({supported()}) or its local directory."
        ) from None


def _unreachable(exc: BaseException) -> bool:
    """Whether a failed fetch from the hub was the network's doing (no connection, a timeout), not the model's."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (LocalEntryNotFoundError, ConnectionError, TimeoutError)) or any(
            cls.__name__ in {"ConnectError", "ConnectTimeout", "ConnectionError", "ReadTimeout"} for cls in type(seen).__mro__
        ):
            return True
        if "couldn't connect" in str(seen) or "could not connect" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def locate(settings: Settings) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only)."""
    name = settings.model
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path, True
    if os.path.sep in name.strip("/").split("/", 1)[-1] or name.startswith((".", "/", "~")):
        raise ModelUnavailableError(
            f"MCP_VISION_MODEL={name!r} is not a directory: set it to a local model directory "
            f"or a Hugging Face model id such as {EXAMPLE}."
        )
    if settings.allow_download:
        return name, False
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if not isinstance(cached, str):
        raise ModelUnavailableError(
            f"The model {name!r} is not available offline: run `mcp-vision-internvl download` to fetch it, "
            "set MCP_VISION_MODEL to a local model directory, or set MCP_VISION_ALLOW_DOWNLOAD=1."
        )
    return name, True


def load(settings: Settings, job: Job, cancelled: Callable[[], bool]) -> Loaded:
    """The configured checkpoint's processor and model, on its device, in eval mode, with a cancellation
    check (`cancelled`) before every layer."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is our log; loading is reported as progress instead
    source, local_only, config = read_config(settings)
    device, quantization, dtype = choose(settings)
    model_type = getattr(config, "model_type", None)
    family = family_for(model_type)
    if family is None:
        raise ModelUnavailableError(
            f"MCP_VISION_MODEL={settings.model!r} is a {model_type or 'unknown'!r} model, not InternVL, Qwen2-VL "
            f"or Qwen2.5-VL: use a checkpoint of a supported family ({supported()}), such as {EXAMPLE}."
        )
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": local_only}
    if quantization in {"nf4", "int8"}:
        kwargs["quantization_config"] = bnb_config(quantization, dtype, list(family.keep_unquantized))
        kwargs["device_map"] = {"": device}
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        raise ModelUnavailableError(
            f"Loading MCP_VISION_MODEL={settings.model!r} failed ({summary(exc, 200)}): "
            "check the model directory, or set MCP_VISION_QUANTIZATION=none / MCP_VISION_DEVICE=cpu."
        ) from None
    if "device_map" not in kwargs:
        model = model.to(device)
    model.eval()
    install_interrupts(model, cancelled)
    if device == "cpu" and model.config.text_config._attn_implementation == "sdpa":
        from .attention import register

        # One-token decode steps without the CPU flash kernel's overhead (see attention.py).
        model.set_attn_implementation({"text_config": register()})
    native = device == "cpu" and quantization == "none" and dtype == torch.bfloat16 and native_gemv_is_faster(model)
    return Loaded(model, processor, family, device, quantization, str(dtype).removeprefix("torch."), native)


def install_interrupts(model: Any, cancelled: Callable[[], bool]) -> None:
    """A check before every layer of the vision encoder and the language model, so a cancelled call stops
    within a layer during the long uninterruptible parts (the vision pass, the prefill), not after them.
    Decoding is stopped between tokens by the stopping criterion instead."""
    import torch

    def check(_module: Any, _args: Any) -> None:
        if cancelled():
            raise Cancelled

    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList):
            for layer in module:
                layer.register_forward_pre_hook(check)


def native_gemv_is_faster(model: Any) -> bool:
    """Whether bf16 decode steps run faster on PyTorch's own CPU kernels than on oneDNN's.

    A decode step multiplies one token's vector by every weight matrix. On CPUs without AMX, oneDNN's bf16
    matrix-vector kernel is far slower than PyTorch's (decode 11 -> 20 tokens/s on InternVL3-1B widths,
    AVX-512 EPYC, measured by bench/), while the vision encoder and prefill need oneDNN's matrix-matrix
    kernels (7x faster than PyTorch's there). The results are the same up to rounding in the last bit of a
    few logits. Timed here on the model's own weights, more than the caches hold, best of three each way.
    """
    import torch

    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    weights, total = [], 0
    for module in model.model.language_model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.bfloat16:
            weights.append(module.weight)
            total += module.weight.nbytes
            if total > 256 * 2**20:
                break
    if total < 64 * 2**20:  # a tiny model: nothing to gain, and too small to time
        return False

    def seconds(onednn: bool) -> float:
        best = float("inf")
        torch.backends.mkldnn.enabled = onednn
        try:
            with torch.inference_mode():
                x = torch.zeros(1, weights[0].shape[1], dtype=torch.bfloat16)
                for _ in range(3):
                    started = time.perf_counter()
                    for w in weights:
                        if w.shape[1] == x.shape[1]:
                            torch.nn.functional.linear(x, w)
                    best = min(best, time.perf_counter() - started)
        finally:
            torch.backends.mkldnn.enabled = True
        return best

    seconds(True)  # first use builds oneDNN's kernels
    return seconds(False) < 0.8 * seconds(True)


def bnb_config(quantization: str, compute_dtype: Any, keep: list[str]) -> Any:
    """bitsandbytes 4-bit NF4 or 8-bit for the language model; `keep` (full module prefixes) stays as is."""
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=keep,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)


__all__ = ["Loaded", "bnb_config", "choose", "install_interrupts", "load", "locate", "native_gemv_is_faster"]
