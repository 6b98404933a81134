"""The common base of the engines that run the model in this process: PyTorch (pytorch/) and OpenVINO (openvino/).

What they share: lazy loading under a lock, the stock processor and a family adapter for the inputs (pytorch/
families.py, model_inputs.py), the vision-feature cache and the KV prefix reuse across a conversation (pytorch/
cache.py), batching, cancellation and results. What each engine supplies, through the hooks below and nothing
else: loading (`_load_model`), the vision pass (`_encode`), generation (`_generate`, whose result hands back the
KV cache to keep: `Generated.kv`), and `parameter_counts`. A kept KV cache is whatever the engine's `_generate`
takes back as `cache`: it answers `get_seq_length()` and `crop(count)` (transformers' caches; openvino's StateKV).

Torch is imported only inside the methods that need it, so importing the package stays cheap.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, ContextOverflowError, InputError, summary
from ..grounding import MARKUP
from .base import Backend, ChatResult, Turn
from .pytorch.cache import ByteBudgetLRU, tensor_bytes
from .pytorch.generation import finish_reason, reading, stages
from .pytorch.model_inputs import ContentKeys, ModelInputs, reusable_prefix

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import Job
    from .pytorch.families import Family
    from .pytorch.model_inputs import Visual

log = logging.getLogger(__name__)


def decode_answer(tokenizer: Any, ids: list[int], keep: tuple[str, ...] = ()) -> str:
    """The answer's text without special tokens (the end of turn, padding), except the ones in `keep`: the
    family's box markup, which its tokenizer may flag special. transformers' decode skips all special tokens or
    none, so the unwanted ones are dropped by id first; written here because no decode option keeps a chosen few."""
    kept = {i for i in map(tokenizer.convert_tokens_to_ids, keep) if i is not None}
    kept = {i for i in kept if tokenizer.convert_ids_to_tokens(i) in keep}  # not an unknown token's id
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special} | set(tokenizer.all_special_ids)
    return tokenizer.decode([i for i in ids if i in kept or i not in special], skip_special_tokens=False)


@dataclass(frozen=True)
class LoadedModel:
    """What an engine's `_load_model` hands the shared code: the inputs' side of the model and how it runs."""

    processor: Any  # the checkpoint's stock processor (tokenizer, image processor, chat template)
    family: Family  # the family adapter that builds the inputs (InternVL, Qwen2-VL, Qwen2.5-VL)
    config: Any  # the checkpoint's transformers config (image token id, the language model's positions)
    generation_config: Any  # its generation config (end and padding tokens)
    device: str
    dtype: str
    quantization: str
    described: str  # how it runs, in words for the log


@dataclass(frozen=True)
class Generated:
    """What an engine's `_generate` returns: prompt plus answer ids [rows, tokens], when the first answer token was
    ready, and the KV cache after the call, read only when it is kept (a conversation's call, not cancelled)."""

    sequences: Any
    first_token_at: float | None
    kv: Callable[[], Any]


class LocalEngine(Backend):
    """Loads lazily, once, under a lock; `chat` runs on the inference worker thread."""

    remote = False

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._caching = settings.cache_bytes > 0
        self._cache: ByteBudgetLRU[Any] = ByteBudgetLRU(settings.cache_bytes)
        self._keys = ContentKeys()
        self._interrupting: Job | None = None  # the job whose vision pass or prefill is running

    # ---------------------------------------------------------------- the hooks each engine supplies

    @abstractmethod
    def _load_model(self, job: Job) -> LoadedModel:
        """Load (under the lock, once)."""

    @abstractmethod
    def _encode(self, visuals: list[Visual]) -> list[Any]:
        """Vision features (a tensor [tokens, hidden]) of each visual, in order; may raise Cancelled when
        `self.interrupted()`."""

    @abstractmethod
    def _generate(self, input_ids: Any, attention_mask: Any, batch: list[ModelInputs], features: dict[str, Any],
                  cache: Any, job: Job, *, max_new_tokens: int, min_new_tokens: int | None) -> Generated:
        """Generate after the prompt (`cache`: the kept KV of its first tokens, or None); `features` per kind
        ("image", "video") fill the placeholders in order. Stops within a token of `job` being cancelled or out
        of time; may raise Cancelled while the prompt is read."""

    # ---------------------------------------------------------------- the contract

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def family(self) -> Family | None:
        """The loaded checkpoint's family adapter; None before loading."""
        return self._loaded.family if self._loaded else None

    @property
    def device(self) -> str | None:
        return self._loaded.device if self._loaded else None

    @property
    def dtype(self) -> str | None:
        return self._loaded.dtype if self._loaded else None

    @property
    def quantization(self) -> str | None:
        return self._loaded.quantization if self._loaded else None

    @property
    def takes_video(self) -> bool:
        return bool(self.family and self.family.takes_video)

    @property
    def grounding_family(self) -> str:
        """The loaded model's box syntax; InternVL's (the default family) before loading."""
        return self.family.grounding if self.family else "internvl"

    @property
    def context_length(self) -> int | None:
        if self._loaded is None:
            return None
        max_len = getattr(self._processor.tokenizer, "model_max_length", None) or 0
        limit = getattr(self._loaded.config.text_config, "max_position_embeddings", None) or max_len
        return int(min(limit, max_len) if max_len and max_len < 10**8 else limit)

    @property
    def _processor(self) -> Any:
        assert self._loaded is not None, "load() first"
        return self._loaded.processor

    # ---------------------------------------------------------------- loading

    def load(self, job: Job) -> float:
        if self._loaded is not None:
            return 0.0
        with self._lock:
            if self._loaded is not None:
                return 0.0
            started = time.monotonic()
            loaded = self._load_model(job)
            self._loaded = loaded
            seconds = time.monotonic() - started
            log.info("loaded %s (%s) in %.1f s", self._settings.model, loaded.described, seconds)
            job.report(0, None, f"model loaded in {seconds:.1f} s")
            return seconds

    def interrupted(self) -> bool:
        """Whether the job whose vision pass or prompt is being read was cancelled (engines check it there)."""
        job = self._interrupting
        return job is not None and job.cancelled()

    def decoding(self) -> None:
        """An engine's `_generate` calls this once the prompt is read: from then on generation itself stops within
        a token, and `interrupted()` stays False."""
        self._interrupting = None

    # ---------------------------------------------------------------- inputs

    def build_inputs(self, turns: list[Turn]) -> ModelInputs:
        """The conversation as the model reads it (see inputs.ModelInputs), with content keys."""
        assert self.family is not None, "load() first"
        inputs = self.family.build_inputs(self._processor, turns)
        inputs.keys = [self._keys(v.part) for v in inputs.visuals]
        return inputs

    def _prepare(self, turns: list[Turn], max_new_tokens: int) -> ModelInputs:
        """Model inputs for one conversation, checked against the context length."""
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a question.")
        try:
            inputs = self.build_inputs(turns)
        except ValueError as exc:
            raise InputError(f"The model input could not be built ({summary(exc, 200)}).") from None
        limit = self.context_length
        if limit and inputs.prompt_len + max_new_tokens > limit:
            raise ContextOverflowError(inputs.prompt_len, max_new_tokens, limit)
        return inputs

    def _features(self, inputs: ModelInputs, needed: range) -> tuple[dict[str, Any], int]:
        """Features of visuals `needed` (indices), from the cache or one vision pass, joined per kind
        ("image", "video") in placeholder order. Returns (features, number of visuals encoded now)."""
        import torch

        found: dict[int, Any] = {}
        missing = []
        for i in needed:
            cached = self._cache.get("f:" + inputs.keys[i]) if self._caching else None
            if cached is None:
                missing.append(i)
            else:
                found[i] = cached
        if missing:
            # Without inference mode autograd records the whole vision pass, and a cached feature tensor keeps
            # every saved activation alive (GBs at 13 tiles) besides running slower.
            with torch.inference_mode():
                encoded = self._encode([inputs.visuals[i] for i in missing])
            for i, features in zip(missing, encoded):
                found[i] = features
                if self._caching:
                    self._cache.put("f:" + inputs.keys[i], features, tensor_bytes(features))
        joined: dict[str, Any] = {}
        for kind in ("image", "video"):
            parts = [found[i] for i in needed if inputs.visuals[i].kind == kind]
            if parts:
                joined[kind] = torch.cat(parts)
        return joined, len(missing)

    # ---------------------------------------------------------------- chat

    def forget(self, conversation: str) -> None:
        """Drop a conversation's KV cache (its session ended)."""
        self._cache.pop("p:" + conversation)

    def _reusable_cache(self, conversation: str | None, inputs: ModelInputs) -> tuple[Any, int]:
        """The conversation's cached KV prefix, cropped to what the new prompt shares with it."""
        if not (self._caching and conversation):
            return None, 0
        entry = self._cache.pop("p:" + conversation)  # taken out: generation mutates it
        if entry is None:
            return None, 0
        old_ids, old_keys, cache = entry
        common = reusable_prefix(old_ids, old_keys, inputs.ids, inputs.spans, inputs.keys)
        if common <= 0:
            return None, 0
        extra = cache.get_seq_length() - common
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count removes that many tokens from the end
        return cache, common

    def _eos_ids(self) -> set[int]:
        eos = self._loaded.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()

    def _pad_id(self) -> int:
        pad = self._loaded.generation_config.pad_token_id
        if pad is None:
            pad = self._processor.tokenizer.pad_token_id
        if pad is None:
            eos = self._loaded.generation_config.eos_token_id
            pad = eos[0] if isinstance(eos, list) else eos
        return int(pad)

    def _result(
        self, inputs: ModelInputs, turns: list[Turn], new_tokens: Any, job: Job, max_new_tokens: int, **fields: Any
    ) -> ChatResult:
        raw_text = decode_answer(self._processor.tokenizer, new_tokens.tolist(), MARKUP.get(self.grounding_family, ()))
        last = len(turns[-1].media)
        newest = inputs.visuals[len(inputs.visuals) - last :] if last else []
        return ChatResult(
            text=raw_text.strip(),
            prompt_tokens=inputs.prompt_len,
            output_tokens=int(len(new_tokens)),
            image_tokens=inputs.image_tokens,
            tiles=[v.tiles for v in newest],
            finish_reason=finish_reason(new_tokens.tolist(), self._eos_ids(), job, max_new_tokens),
            output_ids=new_tokens.tolist(),
            raw_text=raw_text,
            input_sizes=[v.size for v in newest if v.size and v.kind == "image"],
            engine=self.engine,
            **fields,
        )

    def _cancelled_result(self, inputs: ModelInputs, turns: list[Turn], job: Job, max_new_tokens: int,
                          **fields: Any) -> ChatResult:
        import torch

        return self._result(inputs, turns, torch.empty(0, dtype=torch.long), job, max_new_tokens, **fields)

    def chat(
        self,
        turns: list[Turn],
        job: Job,
        *,
        max_new_tokens: int,
        min_new_tokens: int | None = None,
        conversation: str | None = None,
    ) -> ChatResult:
        """Answer the last user turn. With `conversation`, the KV cache of the conversation so far is kept
        and reused next time, so a follow-up only computes its new tokens; vision features are cached by
        image content either way."""
        load_seconds = self.load(job)
        started = time.monotonic()
        inputs = self._prepare(turns, max_new_tokens)
        spans = inputs.spans
        cache, cached_tokens = self._reusable_cache(conversation, inputs)
        first_new = next((i for i, (start, _) in enumerate(spans) if start >= cached_tokens), len(spans))
        job.report(0, max_new_tokens, reading(len(spans) - first_new, inputs.prompt_len - cached_tokens))
        self._interrupting = job
        try:
            features, encoded = self._features(inputs, range(first_new, len(inputs.visuals)))
            vision_done = time.monotonic()
            output = self._generate(
                inputs.input_ids, inputs.attention_mask, [inputs], features, cache, job,
                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            )
        except Cancelled:  # stopped inside the vision pass or the prefill
            return self._cancelled_result(inputs, turns, job, max_new_tokens,
                                          seconds=time.monotonic() - started, load_seconds=load_seconds)
        finally:
            self._interrupting = None
        finished = time.monotonic()
        sequence = output.sequences[0].cpu()
        if self._caching and conversation and not job.cancelled():
            kv = output.kv()
            kept = kv.get_seq_length()
            self._cache.put("p:" + conversation, (sequence[:kept].clone(), inputs.keys, kv), tensor_bytes(kv))
        return self._result(
            inputs, turns, sequence[inputs.prompt_len :], job, max_new_tokens,
            seconds=finished - started,
            load_seconds=load_seconds,
            cached_tokens=cached_tokens,
            images_encoded=encoded,
            stages=stages(started, vision_done, output.first_token_at, finished),
        )

    def chat_batch(
        self,
        conversations: list[list[Turn]],
        job: Job,
        *,
        max_new_tokens: int,
        min_new_tokens: int | None = None,
    ) -> list[ChatResult]:
        """Answer several independent conversations in one generation (left-padded into one batch), so each
        decode step reads the weights once for all of them. Nothing is kept between calls but vision features.
        Results are in order; each carries the batch's own timings."""
        if len(conversations) == 1:
            return [self.chat(conversations[0], job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)]
        load_seconds = self.load(job)
        import torch

        started = time.monotonic()
        batch = [self._prepare(turns, max_new_tokens) for turns in conversations]
        width = max(inputs.prompt_len for inputs in batch)
        input_ids = torch.full((len(batch), width), self._pad_id(), dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, inputs in enumerate(batch):
            input_ids[row, width - inputs.prompt_len :] = inputs.ids
            attention_mask[row, width - inputs.prompt_len :] = 1
        job.report(0, max_new_tokens, f"reading {len(batch)} pages together (prompts of up to {width} tokens)")
        encoded: list[int] = []
        joined: dict[str, list[Any]] = {}
        self._interrupting = job
        try:
            for inputs in batch:  # in row order: the features fill the placeholders row by row
                features, count = self._features(inputs, range(len(inputs.visuals)))
                encoded.append(count)
                for kind, value in features.items():
                    joined.setdefault(kind, []).append(value)
            vision_done = time.monotonic()
            output = self._generate(
                input_ids, attention_mask, batch, {kind: torch.cat(v) for kind, v in joined.items()}, None, job,
                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            )
        except Cancelled:  # stopped inside the vision pass or the prefill: every row is dropped
            return [
                self._cancelled_result(inputs, turns, job, max_new_tokens, seconds=time.monotonic() - started,
                                       load_seconds=load_seconds, batch_size=len(batch))
                for turns, inputs in zip(conversations, batch)
            ]
        finally:
            self._interrupting = None
        finished = time.monotonic()
        timings = stages(started, vision_done, output.first_token_at, finished)
        eos_ids = self._eos_ids()
        results = []
        for row, (turns, inputs) in enumerate(zip(conversations, batch)):
            new_tokens = output.sequences[row, width:].cpu()
            ends = [i for i, token in enumerate(new_tokens.tolist()) if token in eos_ids]
            if ends:  # a finished row is padded up to the longest one
                new_tokens = new_tokens[: ends[0] + 1]
            else:  # a row stopped without an end token (a repetition loop) is padded too
                new_tokens = new_tokens[: len(strip_padding(new_tokens.tolist(), self._pad_id()))]
            results.append(self._result(
                inputs, turns, new_tokens, job, max_new_tokens,
                seconds=finished - started, load_seconds=load_seconds, images_encoded=encoded[row],
                stages=dict(timings), batch_size=len(batch),
            ))
        return results


def strip_padding(tokens: list[int], pad: int) -> list[int]:
    """`tokens` without the pad tokens that follow a row's last real one."""
    end = len(tokens)
    while end and tokens[end - 1] == pad:
        end -= 1
    return tokens[:end]


__all__ = ["Generated", "LoadedModel", "LocalEngine", "strip_padding"]
