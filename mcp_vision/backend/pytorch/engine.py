"""The PyTorch engine: a supported checkpoint (InternVL, Qwen2-VL, Qwen2.5-VL) through transformers.

The shared work (inputs, caches, KV prefix reuse, batching, results) is local_engine.LocalEngine's; this engine
supplies loading (loading.py: device, dtype, NF4 on CUDA), the vision pass (the family adapter's `encode`) and
generation (generation.py: transformers' `generate` with a stopping criterion). With attention.py, loading.py,
families.py and generation.py, the only modules that import torch, transformers and bitsandbytes, always inside
the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..local_engine import Generated, LoadedModel, LocalEngine
from .generation import cache_kwarg, generate

if TYPE_CHECKING:
    from ..base import Job
    from .model_inputs import ModelInputs, Visual


class PyTorchBackend(LocalEngine):
    """Loads lazily, once, under a lock; `chat` runs on the inference worker thread."""

    engine = "pytorch"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._model: Any = None  # the transformers model, once loaded
        self.native_decode = False  # decode steps without oneDNN (see loading.native_gemv_is_faster)

    def _load_model(self, job: Job) -> LoadedModel:
        from .loading import load

        job.report(0, None, f"loading model {self._settings.model}")
        loaded = load(self._settings, job, self.interrupted)
        self._model, self.native_decode = loaded.model, loaded.native_decode
        return LoadedModel(
            processor=loaded.processor, family=loaded.family, config=loaded.model.config,
            generation_config=loaded.model.generation_config, device=loaded.device, dtype=loaded.dtype,
            quantization=loaded.quantization,
            described=(f"{loaded.family.label} on {loaded.device}, {loaded.dtype}, quantization {loaded.quantization}"
                       + (", decode without oneDNN" if loaded.native_decode else "")),
        )

    def parameter_counts(self) -> tuple[int, int] | None:
        """(vision tower + projector, language model) parameters, once loaded: the time budget's first guess."""
        if self._model is None or self.family is None:
            return None
        vision = sum(p.numel() for m in self.family.vision_modules(self._model) for p in m.parameters())
        return vision, sum(p.numel() for p in self._model.model.language_model.parameters())

    def compute_rate(self) -> float | None:
        """On a CPU, FLOP/s of a prefill-sized product in the model's precision on the threads it runs with now
        (measured once per thread count: an `auto` engine sharing the cores with a conversion has fewer)."""
        if self._model is None or self.device != "cpu":
            return None
        import torch

        from .cpu_speed import measured_rate

        return measured_rate(getattr(torch, self.dtype or "float32"))

    def _encode(self, visuals: list[Visual]) -> list[Any]:
        assert self.family is not None
        return self.family.encode(self._model, visuals)

    def _generate(self, input_ids: Any, attention_mask: Any, batch: list[ModelInputs], features: dict[str, Any],
                  cache: Any, job: Job, *, max_new_tokens: int, min_new_tokens: int | None) -> Generated:
        assert self.family is not None

        output, first_token_at = generate(
            self._model, input_ids, attention_mask, self.family.encoder_outputs(features), cache, job,
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            # one row a step: the kernel chosen at load; several: oneDNN's matrix kernels are the faster ones
            native_decode=self.native_decode and int(input_ids.shape[0]) == 1,
            pad_id=self._pad_id(), extra=self.family.generate_kwargs(self._model, batch, int(input_ids.shape[1])),
            on_first_token=self.decoding,
        )
        return Generated(output.sequences, first_token_at, lambda: getattr(output, cache_kwarg()))


__all__ = ["PyTorchBackend"]
