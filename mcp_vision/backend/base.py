"""The small boundary every engine implements: `chat(turns) -> ChatResult`. No torch here."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Union

if TYPE_CHECKING:
    from PIL import Image as PILImage


@dataclass
class Job:
    """Handed to model work on the inference worker: where to report progress, and whether to stop."""

    stop: threading.Event = field(default_factory=threading.Event)
    _report: Callable[[float, float | None, str | None], None] = lambda *_: None
    deadline: float | None = None  # time.monotonic() by which generation stops (the call's time budget)

    def report(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self._report(progress, total, message)

    def cancelled(self) -> bool:
        return self.stop.is_set()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(frozen=True)
class ImagePart:
    """An image in a message, with the tile budget it is shown with (1 for a video frame)."""

    image: PILImage.Image
    max_tiles: int


@dataclass(frozen=True)
class VideoPart:
    """A video as sampled frames and the second each was taken at, for engines that read video natively
    (Qwen2-VL, Qwen2.5-VL); the others are given the frames as numbered images instead."""

    frames: tuple[PILImage.Image, ...]
    timestamps: tuple[float, ...]
    max_tiles: int = 1  # detail budget of each frame


Media = Union[ImagePart, VideoPart]
Part = Union[str, ImagePart, VideoPart]


@dataclass
class Turn:
    """One chat message: text and images in the order the model reads them."""

    role: Literal["user", "assistant"]
    parts: list[Part] = field(default_factory=list)

    @classmethod
    def user(cls, text: str, images: Iterable[PILImage.Image] = (), max_tiles: int = 12) -> Turn:
        """Images first, then the question: the layout InternVL was trained with for one image."""
        return cls("user", [*(ImagePart(img, max_tiles) for img in images), text])

    @classmethod
    def assistant(cls, text: str) -> Turn:
        return cls("assistant", [text])

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    @property
    def media(self) -> list[Media]:
        """Images and videos, in order."""
        return [p for p in self.parts if isinstance(p, (ImagePart, VideoPart))]

    @property
    def image_count(self) -> int:
        """Images, counting each video frame as one (what session bounds count)."""
        return sum(len(p.frames) if isinstance(p, VideoPart) else 1 for p in self.media)

    @property
    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    output_tokens: int
    image_tokens: int
    tiles: list[int]  # tiles per image (or video) of the newest turn, in order; Qwen: 448x448-pixel equivalents
    finish_reason: Literal["stop", "length", "cancelled", "time"]  # time: stopped at the call's deadline
    seconds: float
    load_seconds: float = 0.0
    cached_tokens: int = 0  # prompt tokens whose KV came from the conversation's cache
    images_encoded: int = 0  # images run through the vision encoder (the rest came from the cache)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, for benchmarks
    output_ids: list[int] = field(default_factory=list)  # generated token ids (greedy comparisons)
    raw_text: str | None = None  # the answer exactly as decoded (unstripped), for the history
    batch_size: int = 1  # answers generated together in one batch (seconds and stages are the batch's)
    # (width, height) of each newest-turn image as the processor resized it, where the model sees one size
    # (Qwen: its boxes are in these pixels); empty where the engine tiles instead (InternVL) or cannot tell.
    input_sizes: list[tuple[int, int]] = field(default_factory=list)
    engine: str = ""  # the engine that answered (Backend.engine: "pytorch", "openvino", "remote")

    @property
    def history_text(self) -> str:
        """What goes into the conversation history: re-tokenizes to the generated tokens."""
        return self.text if self.raw_text is None else self.raw_text


class Backend(ABC):
    """The whole contract the service uses: every engine declares every member (one left out fails at
    construction). Callers read these; they never probe."""

    engine: ClassVar[str]  # what runs the model: "pytorch", "openvino" or "remote"
    remote: ClassVar[bool]  # the model runs in another process (calls may overlap; nothing is loaded here)

    def __new__(cls, *args: object, **kwargs: object) -> Backend:
        missing = [name for name in ("engine", "remote") if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"{cls.__name__} does not declare {', '.join(missing)} (backend.base.Backend)")
        return super().__new__(cls)  # and ABC refuses a class with an abstract member left

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The checkpoint (hub id or directory) or the remote engine's model."""

    @property
    @abstractmethod
    def loaded(self) -> bool:
        """Whether the model is loaded (the remote engine: checked)."""

    @property
    @abstractmethod
    def device(self) -> str | None:
        """Where the model runs: "cuda", "mps", "cpu" or "remote"; None while unknown (before loading)."""

    @property
    @abstractmethod
    def context_length(self) -> int | None:
        """Tokens the model attends to, prompt and answer together; None while unknown."""

    @abstractmethod
    def parameter_counts(self) -> tuple[int, int] | None:
        """(vision tower + projector, language model) parameters; None while unknown (remote, not loaded)."""

    @abstractmethod
    def compute_rate(self) -> float | None:
        """Dense FLOP/s the model's device reaches in its precision, measured where the engine can (a CPU);
        None where unknown (remote, GPUs, before loading). The time budget's first guess starts from it."""

    @property
    @abstractmethod
    def takes_video(self) -> bool:
        """Whether video goes in as a VideoPart with frame times (Qwen) rather than numbered images."""

    @property
    @abstractmethod
    def grounding_family(self) -> str:
        """Whose box syntax the answers use (grounding.py's names: "internvl", "qwen2_vl", "qwen2_5_vl")."""

    @abstractmethod
    def load(self, job: Job) -> float:
        """Load the model if it is not loaded yet; return the seconds spent (0 when already loaded)."""

    @abstractmethod
    def chat(
        self, turns: list[Turn], job: Job, *, max_new_tokens: int, min_new_tokens: int | None = None,
        conversation: str | None = None,
    ) -> ChatResult:
        """Answer the last user turn given the whole conversation. `conversation` names it, so an engine
        may keep state (a KV cache) between calls; `min_new_tokens` keeps the end of the answer away until
        then (benchmarks fix answer lengths with it). Raise ContextOverflowError when it does not fit."""

    @abstractmethod
    def chat_batch(
        self, conversations: list[list[Turn]], job: Job, *, max_new_tokens: int, min_new_tokens: int | None = None
    ) -> list[ChatResult]:
        """Answer several independent conversations (no history kept), in order; an engine may run them
        as one batch."""

    @abstractmethod
    def forget(self, conversation: str) -> None:
        """Drop any state kept for a conversation."""


__all__ = ["Backend", "ChatResult", "ImagePart", "Job", "Media", "Part", "Turn", "VideoPart"]
