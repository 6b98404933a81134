"""Time budgets: how long a call may take (from its arrival, waiting and loading included), the speeds this
process has measured, and the plan that fits a call's tiles, frames and answer length into what is left."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .backend.base import ChatResult
from .limits import TILE_SIDE

TOKENS_PER_TILE = 256  # image tokens one tile becomes (InternVL's pixel shuffle)
FRAME_TEXT_TOKENS = 16  # a frame's label and timestamp in the prompt ("Frame7: ", "Frame7: 12.50 s, ")
# Of the time left, the share vision and prefill may take: the rest is for the answer and the reply.
UPFRONT_SHARE = 0.5
MARGIN_SECONDS = 0.5  # kept back for shaping and sending the result


def tiles_read(max_tiles: int) -> int:
    """The tiles an image split into up to `max_tiles` costs at most: a split image gets a thumbnail tile too."""
    return max_tiles + (1 if max_tiles > 1 else 0)


@dataclass(frozen=True)
class Budget:
    """A call's time: `seconds` from `started` (monotonic), or none."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, configured: float, asked: float | None) -> Budget:
        """The call's budget: `asked` (the time_budget argument) or the configured one; 0 means none."""
        seconds = asked if asked is not None else configured
        return cls(seconds if seconds and seconds > 0 else None)

    @property
    def deadline(self) -> float | None:
        return None if self.seconds is None else self.started + self.seconds

    @property
    def work_deadline(self) -> float | None:
        """When model work must stop (time.monotonic()): the deadline less the margin kept for the result."""
        return None if self.seconds is None else self.started + self.seconds - MARGIN_SECONDS

    def remaining(self) -> float | None:
        """Seconds left (may be negative), or None without a budget."""
        return None if self.seconds is None else self.started + self.seconds - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0


@dataclass
class _Rate:
    """An exponentially weighted rate, with the first guess until a measurement arrives."""

    value: float
    measured: bool = False

    def update(self, sample: float, weight: float = 0.5) -> None:
        if sample <= 0:
            return
        self.value = sample if not self.measured else (1 - weight) * self.value + weight * sample
        self.measured = True


class Speeds:
    """What this process has measured: seconds per vision tile, prefill and decode tokens per second.

    Before any call the guesses come from the model's size and the machine's compute: `flops`, what the engine
    measured on this device (`Backend.compute_rate`: a CPU's matrix products in the model's precision, on the
    threads it has now), else conservative figures (a 2-core CPU's bf16 compute and memory bandwidth; a GPU's
    are far larger). A guess that is too slow only reduces more than needed, once, and the first answer's
    timings replace it; one too fast lets the first call run past its budget, which is why a CPU is measured:
    the fixed CPU figure was 4-7 times too fast on an AVX2-only EPYC."""

    # (dense bf16 FLOP/s, weight bytes read per second) a conservative machine reaches.
    MACHINES = {"cpu": (1.5e11, 1.0e10), "cuda": (5.0e13, 5.0e11)}
    PATCHES_PER_TILE = (TILE_SIDE // 14) ** 2 + 1  # 14 px patches, plus the class token
    # The share of a measured matrix product's FLOP/s taken for a whole model pass (attention, norms, the
    # activations between layers also cost time): a half, on the slow side on purpose (see above).
    MODEL_EFFICIENCY = 0.5

    def __init__(self, device: str = "cpu", vision_params: int | None = None, language_params: int | None = None,
                 flops: float | None = None):
        if device == "remote" or vision_params is None or language_params is None:
            fast = device in {"cuda", "remote"}
            tile, prefill, decode = (0.1, 3000.0, 25.0) if fast else (2.5, 300.0, 4.0)
        else:
            fixed, bandwidth = self.MACHINES.get(device, self.MACHINES["cpu"])
            flops = flops * self.MODEL_EFFICIENCY if flops else fixed
            tile = 2 * vision_params * self.PATCHES_PER_TILE / flops
            prefill = flops / (2 * max(language_params, 1))
            decode = min(bandwidth / (2 * max(language_params, 1)), prefill)
        self.vision_tile = _Rate(tile)  # seconds a tile
        self.prefill = _Rate(prefill)  # tokens a second
        self.decode = _Rate(decode)  # tokens a second, one answer
        self._lock = threading.Lock()

    def learn(self, result: ChatResult) -> None:
        """Update from one answer's stage timings (a batch's are shared by its rows)."""
        stages = result.stages
        if not stages:
            return
        with self._lock:
            tiles = sum(result.tiles) * result.batch_size if result.images_encoded else 0
            if tiles and stages.get("preprocess_and_vision", 0) > 0:
                self.vision_tile.update(stages["preprocess_and_vision"] / tiles)
            new_prompt = (result.prompt_tokens - result.cached_tokens) * result.batch_size
            if new_prompt > 0 and stages.get("prefill", 0) > 0:
                self.prefill.update(new_prompt / stages["prefill"])
            if result.output_tokens > 1 and stages.get("decode", 0) > 0 and result.batch_size == 1:
                self.decode.update((result.output_tokens - 1) / stages["decode"])

    def upfront(self, tiles: int, text_tokens: int) -> float:
        """Estimated seconds before the first token: `tiles` through the vision encoder, then the prefill."""
        return tiles * self.vision_tile.value + (tiles * TOKENS_PER_TILE + text_tokens) / self.prefill.value

    def answer(self, tokens: int) -> float:
        return tokens / self.decode.value


@dataclass
class Plan:
    """What a call will use: tiles per image, frames, answer length, and whether the budget reduced them."""

    seconds: float | None
    tiles: int | None = None
    frames: int | None = None
    max_new_tokens: int = 0
    reduced: bool = False

    def as_dict(self) -> dict:
        return {
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "tiles": self.tiles,
            "frames": self.frames,
            "max_new_tokens": self.max_new_tokens,
            "reduced": self.reduced,
        }


def plan(
    budget: Budget,
    speeds: Speeds,
    *,
    images: int = 0,
    tiles: int | None = None,
    frames: int | None = None,
    max_new_tokens: int,
    text_tokens: int = 200,
    min_new_tokens: int = 32,
    context: int | None = None,
) -> Plan:
    """Fit a call into what is left of `budget`: fewer frames first, then fewer tiles per image, so that
    vision and prefill take at most half the time left; then the answer length the measured decode speed
    allows in the rest (only once decoding has been measured: a guess never cuts an answer, the deadline
    does). `images` images of up to `tiles` tiles each; or `frames` frames of one tile each, never more than
    the model's `context` (tokens) holds."""
    left = budget.remaining()
    result = Plan(seconds=budget.seconds, tiles=tiles, frames=frames, max_new_tokens=max_new_tokens)
    if context and result.frames:  # frames beyond the model's context could never be read at all
        room = (context - max_new_tokens - text_tokens) // (TOKENS_PER_TILE + FRAME_TEXT_TOKENS)
        if result.frames > room:
            result.frames, result.reduced = max(1, room), True
    if left is None:
        return result
    left -= MARGIN_SECONDS
    upfront_limit = max(0.0, left * UPFRONT_SHARE)

    def cost(t: int | None, f: int | None) -> float:
        return speeds.upfront((f or 0) + images * (tiles_read(t) if t else 0), text_tokens)

    while result.frames and result.frames > 1 and cost(result.tiles, result.frames) > upfront_limit:
        result.frames = max(1, result.frames * 3 // 4)
        result.reduced = True
    while result.tiles and result.tiles > 1 and cost(result.tiles, result.frames) > upfront_limit:
        result.tiles = max(1, result.tiles - max(1, result.tiles // 4))
        result.reduced = True
    if speeds.decode.measured:
        room = left - cost(result.tiles, result.frames)
        fits = int(room * speeds.decode.value)
        if fits < result.max_new_tokens:
            result.max_new_tokens = max(min(min_new_tokens, result.max_new_tokens), fits)
            result.reduced = True
    return result


__all__ = ["Budget", "Speeds", "Plan", "plan", "tiles_read", "TOKENS_PER_TILE"]
