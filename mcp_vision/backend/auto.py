"""`MCP_VISION_BACKEND=auto` with the `openvino` extra installed: the engine is chosen at load, when torch may
be imported: PyTorch where CUDA or an Apple GPU is present or the checkpoint is not one OpenVINO runs here, else OpenVINO
(and PyTorch after all, with a warning, if converting or compiling for OpenVINO fails)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailableError

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import ChatResult, Job, Turn

log = logging.getLogger(__name__)


class AutoBackend:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: Any = None

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def loaded(self) -> bool:
        return self._engine is not None and self._engine.loaded

    def __getattr__(self, name: str) -> Any:  # the chosen engine's own attributes, once there is one
        engine = self.__dict__.get("_engine")
        if engine is None:
            raise AttributeError(name)
        return getattr(engine, name)

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
                    from .local import LocalBackend

                    self._engine = LocalBackend(self._settings)
        return self._engine.load(job)

    def _choose(self) -> Any:
        from .loading import accelerator
        from .local import LocalBackend

        if self._settings.device == "auto" and accelerator():
            return LocalBackend(self._settings)
        from .openvino_engine import OpenVINOBackend

        engine = OpenVINOBackend(self._settings)
        return engine if engine.runs_checkpoint() else LocalBackend(self._settings)

    def chat(self, turns: list[Turn], job: Job, **kwargs: Any) -> ChatResult:
        self.load(job)
        return self._engine.chat(turns, job, **kwargs)

    def chat_batch(self, conversations: list[list[Turn]], job: Job, **kwargs: Any) -> list[ChatResult]:
        self.load(job)
        return self._engine.chat_batch(conversations, job, **kwargs)

    def forget(self, conversation: str) -> None:
        if self._engine is not None:
            self._engine.forget(conversation)


def _checkpoint_loads(settings: Settings) -> bool:
    """Whether the failure was OpenVINO's, not the checkpoint's: the checkpoint's config reads."""
    from .loading import read_config

    try:
        read_config(settings)
    except ModelUnavailableError:
        return False
    return True


__all__ = ["AutoBackend"]
