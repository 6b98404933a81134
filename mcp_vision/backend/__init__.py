"""The model boundary. `base` is torch-free; engines import their heavy libraries lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, ChatResult, Turn

if TYPE_CHECKING:
    from ..settings import Settings


def create_backend(settings: Settings) -> Backend:
    """The configured engine, not yet loaded (loading or checking happens on first use)."""
    if settings.backend == "openai":
        from .remote import OpenAIBackend  # standard library only: never torch

        return OpenAIBackend(settings)
    if settings.backend == "openvino":
        from .openvino_engine import OpenVINOBackend

        return OpenVINOBackend(settings)
    if settings.backend == "auto" and openvino_candidate(settings):
        from .auto import AutoBackend

        return AutoBackend(settings)
    from .local import LocalBackend  # torch only once it loads

    return LocalBackend(settings)


def openvino_candidate(settings: Settings) -> bool:
    """Whether `auto` may pick OpenVINO: its extra is installed and nothing asks for PyTorch (CUDA, or a
    an Apple GPU, or a PyTorch-only quantization or dtype). Whether CUDA is present is known only once torch is imported, at
    load (AutoBackend decides then). Nothing is imported here."""
    from importlib.util import find_spec

    if find_spec("openvino") is None or find_spec("nncf") is None:
        return False
    return settings.device in {"auto", "cpu"} and settings.quantization == "auto" and settings.dtype == "auto"


__all__ = ["Backend", "ChatResult", "Turn", "create_backend"]
