"""The small boundary every engine implements: `chat(turns) -> ChatResult`. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ..worker import Job


@dataclass
class Turn:
    """One chat message. A user turn's images come before its text, in order."""

    role: Literal["user", "assistant"]
    text: str
    images: list[PILImage.Image] = field(default_factory=list)


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    output_tokens: int
    image_tokens: int
    tiles: list[int]  # tiles per image of the newest turn, in order
    finish_reason: Literal["stop", "length", "cancelled"]
    seconds: float
    load_seconds: float = 0.0


class Backend(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    def load(self, job: Job) -> float:
        """Load the model if it is not loaded yet; return the seconds spent (0 when already loaded)."""
        ...

    def chat(self, turns: list[Turn], job: Job, *, max_new_tokens: int, max_tiles: int) -> ChatResult:
        """Answer the last user turn given the whole conversation."""
        ...


__all__ = ["Backend", "ChatResult", "Turn"]
