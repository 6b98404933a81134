"""Test doubles of the engine contract: `Wrapping` forwards every declared member to a real engine (the tiny
model's), so a double overrides only what its test is about and still implements the whole contract."""

from __future__ import annotations

from typing import Any

from mcp_vision.backend.base import Backend, ChatResult, Job, Turn


class Wrapping(Backend):
    """The wrapped engine's declarations and behaviour, member by member."""

    engine = "test"
    remote = False

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def loaded(self) -> bool:
        return self.inner.loaded

    @property
    def device(self) -> str | None:
        return self.inner.device

    @property
    def context_length(self) -> int | None:
        return self.inner.context_length

    def parameter_counts(self) -> tuple[int, int] | None:
        return self.inner.parameter_counts()

    def compute_rate(self) -> float | None:
        return self.inner.compute_rate()

    @property
    def takes_video(self) -> bool:
        return self.inner.takes_video

    @property
    def grounding_family(self) -> str:
        return self.inner.grounding_family

    def load(self, job: Job) -> float:
        return self.inner.load(job)

    def chat(self, turns: list[Turn], job: Job, *, max_new_tokens: int, min_new_tokens: int | None = None,
             conversation: str | None = None) -> ChatResult:
        return self.inner.chat(turns, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                               conversation=conversation)

    def chat_batch(self, conversations: list[list[Turn]], job: Job, *, max_new_tokens: int,
                   min_new_tokens: int | None = None) -> list[ChatResult]:
        return self.inner.chat_batch(conversations, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)

    def forget(self, conversation: str) -> None:
        self.inner.forget(conversation)
