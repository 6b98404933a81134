"""`MCP_VISION_BACKEND=auto` with the `openvino` extra installed: the engine is chosen at load, when torch may
be imported: PyTorch where CUDA or an Apple GPU is present or the checkpoint is not one OpenVINO runs here, else OpenVINO
(and PyTorch after all, with a warning, if converting or compiling for OpenVINO fails).

No dead wait: when OpenVINO is the choice but the checkpoint has not been converted yet (minutes), the PyTorch engine
loads (seconds) and answers meanwhile, while the conversion runs in the background in a child process at a lower
priority on part of the cores. Once it is compiled, the next call moves to OpenVINO; sessions carry over (the new
engine recomputes what it does not hold: the conversation's KV, vision features)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

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
        self._engine: LocalEngine | None = None  # the engine answering now
        self._lock = threading.Lock()
        self._next: LocalEngine | None = None  # the OpenVINO engine, once its background preparation is done
        self._preparing: threading.Thread | None = None
        self.preparing_step = ""  # the background conversion's last step, for progress messages

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

    def compute_rate(self) -> float | None:
        return self._engine.compute_rate() if self._engine is not None else None

    @property
    def takes_video(self) -> bool:
        return self._engine is not None and self._engine.takes_video

    @property
    def grounding_family(self) -> str:
        return self._engine.grounding_family if self._engine is not None else "internvl"

    @property
    def converting(self) -> bool:
        """Whether the OpenVINO conversion is running in the background while PyTorch answers."""
        return self._preparing is not None and self._preparing.is_alive()

    def load(self, job: Job) -> float:
        with self._lock:
            self._take_next()
            # While a conversion runs (an earlier PyTorch load failed), PyTorch loads again: never a second conversion.
            if (self._engine is None or not self._engine.loaded) and not self.converting:
                engine = self._choose()
                if engine.engine == "openvino":
                    from .openvino.engine import OpenVINOBackend

                    assert isinstance(engine, OpenVINOBackend)
                    if not engine.converted():
                        engine.background = True
                        self._engine = self._pytorch()
                        self._prepare_in_background(engine)
                        job.report(0, None, "loading the PyTorch engine to answer while the model converts to "
                                   "OpenVINO in the background (once; minutes)")
                        return self._engine.load(job)
                    try:
                        seconds = engine.load(job)
                        self._engine = engine
                        return seconds
                    except ModelUnavailableError as exc:
                        if not _checkpoint_loads(self._settings):
                            raise
                        log.warning("the OpenVINO engine could not load the model (%s); using PyTorch instead", exc)
                        engine = self._pytorch()
                self._engine = engine
            return self._engine.load(job)

    def _pytorch(self) -> LocalEngine:
        from .pytorch.engine import PyTorchBackend

        return PyTorchBackend(self._settings)

    def _share_cores(self) -> int | None:
        """While the converter runs on half the cores (openvino/convert.py, --background), PyTorch answers on the
        other half: a torch thread on a core the converter also uses holds every parallel step back to its pace.
        Returns the thread count to restore if the conversion fails (None: nothing was changed)."""
        if self._settings.threads:  # MCP_VISION_THREADS: the user's own choice
            return None
        import os

        import torch

        before = torch.get_num_threads()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores - cores // 2))
        return before

    def _prepare_in_background(self, engine: LocalEngine) -> None:
        """Convert and compile for OpenVINO on a thread of its own (the conversion itself in a child process, at a
        lower priority on part of the cores); the next call after it finishes moves to it."""
        from .base import Job

        threads = self._share_cores()

        def report(_done: float, _total: float | None, message: str | None) -> None:
            if message:
                self.preparing_step = message
                log.info("OpenVINO, in the background: %s", message)

        def prepare() -> None:
            try:
                engine.load(Job(_report=report))
            except Exception as exc:  # noqa: BLE001 - PyTorch keeps answering; the log says why
                log.warning("the OpenVINO conversion failed (%s); the PyTorch engine keeps answering", exc)
                if threads is not None:  # on every core again, the converter gone
                    import torch

                    torch.set_num_threads(threads)
                return
            with self._lock:
                self._next = engine
            log.info("the OpenVINO engine is ready: the next call moves to it")

        self._preparing = threading.Thread(target=prepare, name="mcp-vision-openvino-prepare", daemon=True)
        self._preparing.start()

    def _take_next(self) -> None:
        """Move to the engine prepared in the background, if it is ready (under the lock)."""
        if self._next is not None:
            self._engine, self._next = self._next, None  # the PyTorch engine's model goes with its last reference
            log.info("moved to the OpenVINO engine; sessions carry over")

    def _current(self, job: Job) -> LocalEngine:
        """The engine for this call: OpenVINO from the first call after its background preparation finished."""
        with self._lock:
            self._take_next()
            engine = self._engine
        assert engine is not None
        if self.converting:
            job.report(0, None, f"answering with the PyTorch engine while the model converts to OpenVINO "
                       f"({self.preparing_step or 'starting'})")
        return engine

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
        return self._current(job).chat(turns, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                       conversation=conversation)

    def chat_batch(self, conversations: list[list[Turn]], job: Job, *, max_new_tokens: int,
                   min_new_tokens: int | None = None) -> list[ChatResult]:
        self.load(job)
        return self._current(job).chat_batch(conversations, job, max_new_tokens=max_new_tokens,
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
