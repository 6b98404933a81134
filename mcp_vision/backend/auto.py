"""`MCP_VISION_BACKEND=auto` with the `openvino` extra installed: the engine is chosen at load, when torch may
be imported: PyTorch where CUDA or an Apple GPU is present or the checkpoint is not one OpenVINO runs here, else OpenVINO
(and PyTorch after all, with a warning, if converting or compiling for OpenVINO fails)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailableError
from .base import Backend

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import ChatResult, Job, Turn
    from .local_engine import LocalEngine

log = logging.getLogger(__name__)


class AutoBackend(Backend):
    """Forwards the contract to the engine chosen at load; before that, answers what is known without it."""

    engine = "auto"
    remote = False

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: LocalEngine | None = None

    @property
    def chosen(self) -> LocalEngine | None:
        """The engine chosen at load (PyTorch or OpenVINO); None before."""
        return self._engine

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def loaded(self) -> bool:
        return self._engine is not None and self._engine.loaded

    @property
    def device(self) -> str | None:
        return self._engine.device if self._engine is not None else None

    @property
    def context_length(self) -> int | None:
        return self._engine.context_length if self._engine is not None else None

    def parameter_counts(self) -> tuple[int, int] | None:
        return self._engine.parameter_counts() if self._engine is not None else None

    @property
    def takes_video(self) -> bool:
        return self._engine is not None and self._engine.takes_video

    @property
    def grounding_family(self) -> str:
        return self._engine.grounding_family if self._engine is not None else "internvl"

    def load(self, job: Job) -> float:
        if self._engine is None or not self._engine.loaded:
            self._engine = self._choose()
            if self._engine.engine == "openvino":
                try:
                    return self._engine.load(job)
                except ModelUnavailableError as exc:
                    if not _checkpoint_loads(self._settings):
                        raise
                    log.warning("the OpenVINO engine could not load the model (%s); using PyTorch instead", exc)
                    from .pytorch.engine import PyTorchBackend

                    self._engine = PyTorchBackend(self._settings)
        return self._engine.load(job)

    def _choose(self) -> LocalEngine:
        from .pytorch.engine import PyTorchBackend
        from .pytorch.loading import accelerator

        if self._settings.device == "auto" and accelerator():
            return PyTorchBackend(self._settings)
        from .openvino.engine import OpenVINOBackend

        engine = OpenVINOBackend(self._settings)
        return engine if engine.runs_checkpoint() else PyTorchBackend(self._settings)

    def chat(self, turns: list[Turn], job: Job, *, max_new_tokens: int, min_new_tokens: int | None = None,
             conversation: str | None = None) -> ChatResult:
        self.load(job)
        assert self._engine is not None
        return self._engine.chat(turns, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                 conversation=conversation)

    def chat_batch(self, conversations: list[list[Turn]], job: Job, *, max_new_tokens: int,
                   min_new_tokens: int | None = None) -> list[ChatResult]:
        self.load(job)
        assert self._engine is not None
        return self._engine.chat_batch(conversations, job, max_new_tokens=max_new_tokens,
                                       min_new_tokens=min_new_tokens)

    def forget(self, conversation: str) -> None:
        if self._engine is not None:
            self._engine.forget(conversation)


def _checkpoint_loads(settings: Settings) -> bool:
    """Whether the failure was OpenVINO's, not the checkpoint's: the checkpoint's config reads."""
    from .pytorch.loading import read_config

    try:
        read_config(settings)
    except ModelUnavailableError:
        return False
    return True


__all__ = ["AutoBackend"]
