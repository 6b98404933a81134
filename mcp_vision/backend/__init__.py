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
    from .local import LocalBackend  # torch only once it loads

    return LocalBackend(settings)


__all__ = ["Backend", "ChatResult", "Turn", "create_backend"]
