"""The model boundary. `base` is torch-free; engines import their heavy libraries lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, ChatResult, Turn

if TYPE_CHECKING:
    from ..settings import Settings


def create_backend(settings: Settings) -> Backend:
    """The configured engine, not yet loaded (loading or checking happens on first use)."""
    if settings.backend == "openai":
        from .remote import RemoteBackend  # httpx2 only: never torch

        return RemoteBackend(settings)
    if settings.backend == "openvino":
        from .openvino_engine import OpenVINOBackend

        return OpenVINOBackend(settings)
    if settings.backend == "auto" and openvino_candidate(settings):
        from .auto import AutoBackend

        return AutoBackend(settings)
    from .local import LocalBackend  # torch only once it loads

    return LocalBackend(settings)


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


__all__ = ["Backend", "ChatResult", "Turn", "create_backend", "openvino_candidate", "openvino_installed"]
