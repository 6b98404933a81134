"""The model boundary: `base` declares the contract (torch-free); one folder per engine (pytorch/, openvino/,
remote/), `local_engine` the common base of the two in-process ones, `auto` the choice between them at load.
Engines import their heavy libraries lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, ChatResult, Turn

if TYPE_CHECKING:
    from ..settings import Settings


def engine_class(settings: Settings) -> type[Backend]:
    """The configured engine's class: what it declares (`remote`, `engine`) is known before it is made."""
    if settings.backend == "openai":
        from .remote import RemoteBackend  # httpx2, never torch

        return RemoteBackend
    if settings.backend == "openvino":
        from .openvino.engine import OpenVINOBackend

        return OpenVINOBackend
    if settings.backend == "auto" and openvino_candidate(settings):
        from .auto import AutoBackend

        return AutoBackend
    from .pytorch.engine import PyTorchBackend  # torch only once it loads

    return PyTorchBackend


def create_backend(settings: Settings) -> Backend:
    """The configured engine, not yet loaded (loading or checking happens on first use)."""
    return engine_class(settings)(settings)


def openvino_installed() -> bool:
    """Whether the `openvino` extra (openvino and nncf) is installed, without importing it."""
    from importlib.util import find_spec

    return find_spec("openvino") is not None and find_spec("nncf") is not None


def openvino_candidate(settings: Settings) -> bool:
    """Whether `auto` may pick OpenVINO: its extra is installed and nothing asks for PyTorch (CUDA, an Apple
    GPU, or a PyTorch-only quantization or dtype). Whether a GPU is present is known only once torch is
    imported, at load (AutoBackend decides then). Nothing is imported here."""
    return (openvino_installed() and settings.device in {"auto", "cpu"} and settings.quantization == "auto"
            and settings.dtype == "auto")


__all__ = ["Backend", "ChatResult", "Turn", "create_backend", "engine_class", "openvino_candidate", "openvino_installed"]
