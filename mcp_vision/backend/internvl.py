"""InternVL through transformers: the stock processor (tiling, chat template) and `generate`.

With attention.py, the only modules that import torch, transformers and bitsandbytes, always inside
the functions that need them, so importing the package stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, ContextOverflowError, InputError, ModelUnavailableError, summary
from .base import ChatResult, ImagePart, Turn
from .cache import ByteBudgetLRU, tensor_bytes

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import Job

log = logging.getLogger(__name__)

# Full module prefixes: bitsandbytes matches these against qualified names, short names match nothing.
KEEP_UNQUANTIZED = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


class InternVLBackend:
    """Loads lazily, once, under a lock; `chat` runs on the inference worker thread."""

    engine = "pytorch"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self.device: str | None = None
        self.dtype: str | None = None
        self.quantization: str | None = None
        self._caching = settings.cache_bytes > 0
        self._cache: ByteBudgetLRU[Any] = ByteBudgetLRU(settings.cache_bytes)
        self._image_keys: dict[int, tuple[ImagePart, str]] = {}
        self.native_decode = False  # decode steps without oneDNN (see _native_gemv_is_faster)
        self._interrupting: Job | None = None  # the job whose vision pass or prefill is running

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    # ---------------------------------------------------------------- loading

    def _choose(self) -> tuple[str, str, Any]:
        """(device, quantization, torch dtype) from settings and the hardware."""
        import torch

        s = self._settings
        device = s.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError(
                "MCP_VISION_DEVICE=cuda but no CUDA device is available: set MCP_VISION_DEVICE=auto or cpu."
            )
        quantization = s.quantization
        if quantization == "auto":
            # On CUDA, NF4 fits the model in little memory. On CPU, bf16 encodes images and prefills
            # 4-8x faster than NF4 (measured), which dominates a vision call.
            quantization = "nf4" if device == "cuda" else "none"
        if s.dtype != "auto":
            dtype = getattr(torch, s.dtype)
        elif device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.bfloat16
        return device, quantization, dtype

    def _locate(self) -> tuple[str, bool]:
        """(what to pass to from_pretrained, local_files_only)."""
        name = self._settings.model
        path = os.path.expanduser(name)
        if os.path.isdir(path):
            return path, True
        if os.path.sep in name.strip("/").split("/", 1)[-1] or name.startswith((".", "/", "~")):
            raise ModelUnavailableError(
                f"MCP_VISION_MODEL={name!r} is not a directory: set it to a local InternVL model directory "
                "or a Hugging Face model id such as OpenGVLab/InternVL3-2B-hf."
            )
        if self._settings.allow_download:
            return name, False
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str):
            raise ModelUnavailableError(
                f"The model {name!r} is not available offline: run `mcp-vision download` to fetch it, "
                "set MCP_VISION_MODEL to a local model directory, or set MCP_VISION_ALLOW_DOWNLOAD=1."
            )
        return name, True

    def load(self, job: Job) -> float:
        if self._model is not None:
            return 0.0
        with self._lock:
            if self._model is not None:
                return 0.0
            started = time.monotonic()
            job.report(0, None, f"loading model {self._settings.model}")
            source, local_only = self._locate()
            device, quantization, dtype = self._choose()
            import torch
            from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # stderr is our log; loading is reported as progress instead
            try:
                config = AutoConfig.from_pretrained(source, local_files_only=local_only)
            except (OSError, ValueError) as exc:
                raise ModelUnavailableError(
                    f"MCP_VISION_MODEL={self._settings.model!r} could not be read as a model ({summary(exc, 200)}): "
                    "set it to an InternVL -hf checkpoint or its local directory."
                ) from None
            if getattr(config, "model_type", None) != "internvl":
                raise ModelUnavailableError(
                    f"MCP_VISION_MODEL={self._settings.model!r} is a {getattr(config, 'model_type', 'unknown')!r} "
                    "model, not InternVL: use an InternVL -hf checkpoint such as OpenGVLab/InternVL3-2B-hf."
                )
            kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": local_only}
            if quantization in {"nf4", "int8"}:
                kwargs["quantization_config"] = _bnb_config(quantization, dtype)
                kwargs["device_map"] = {"": device}
            try:
                processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
                model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
            except (OSError, ValueError, ImportError, RuntimeError) as exc:
                raise ModelUnavailableError(
                    f"Loading MCP_VISION_MODEL={self._settings.model!r} failed ({summary(exc, 200)}): "
                    "check the model directory, or set MCP_VISION_QUANTIZATION=none / MCP_VISION_DEVICE=cpu."
                ) from None
            if "device_map" not in kwargs:
                model = model.to(device)
            model.eval()
            self._install_interrupts(model)
            if device == "cpu" and model.config.text_config._attn_implementation == "sdpa":
                from .attention import register

                # One-token decode steps without the CPU flash kernel's overhead (see attention.py).
                model.set_attn_implementation({"text_config": register()})
            self._processor, self._model = processor, model
            self.device, self.quantization, self.dtype = device, quantization, str(dtype).removeprefix("torch.")
            if device == "cpu" and quantization == "none" and dtype == torch.bfloat16:
                self.native_decode = _native_gemv_is_faster(model)
            seconds = time.monotonic() - started
            log.info(
                "loaded %s on %s (%s, quantization %s%s) in %.1f s",
                self._settings.model, device, self.dtype, quantization,
                ", decode without oneDNN" if self.native_decode else "", seconds,
            )
            job.report(0, None, f"model loaded in {seconds:.1f} s")
            del torch
            return seconds

    def parameter_counts(self) -> tuple[int, int] | None:
        """(vision tower + projector, language model) parameters, once loaded: the time budget's first guess."""
        if self._model is None:
            return None
        inner = self._model.model
        vision = sum(p.numel() for m in (inner.vision_tower, inner.multi_modal_projector) for p in m.parameters())
        return vision, sum(p.numel() for p in inner.language_model.parameters())

    def _install_interrupts(self, model: Any) -> None:
        """A check before every layer of the vision encoder and the language model, so a cancelled call
        stops within a layer during the long uninterruptible parts (the vision pass, the prefill), not
        after them. Decoding is stopped between tokens by the stopping criterion instead."""
        import torch

        def check(_module: Any, _args: Any) -> None:
            job = self._interrupting
            if job is not None and job.cancelled():
                raise Cancelled

        for module in model.modules():
            if isinstance(module, torch.nn.ModuleList):
                for layer in module:
                    layer.register_forward_pre_hook(check)

    # ---------------------------------------------------------------- chat

    def build_inputs(self, turns: list[Turn]) -> dict[str, Any]:
        """Token ids and per-image pixel values for the conversation, built with the processor's own chat
        template, tiling and image-token expansion; each image keeps its own tile budget."""
        processor = self._processor
        messages = []
        images: list[ImagePart] = []
        for turn in turns:
            content: list[dict[str, Any]] = []
            for part in turn.parts:
                if isinstance(part, ImagePart):
                    content.append({"type": "image"})
                    images.append(part)
                elif part:
                    content.append({"type": "text", "text": part})
            messages.append({"role": turn.role, "content": content})
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        pieces = prompt.split(processor.image_token)
        if len(pieces) - 1 != len(images):
            raise InputError(
                f"The model's chat template placed {len(pieces) - 1} image placeholders for {len(images)} images: "
                "use an InternVL -hf checkpoint whose chat template emits one per image."
            )
        pixel_values = []
        num_patches: list[int] = []
        for part in images:
            out = processor.image_processor(
                images=[part.image], crop_to_patches=part.max_tiles > 1, max_patches=part.max_tiles, return_tensors="pt"
            )
            pixel_values.append(out["pixel_values"])
            num_patches.append(int(out["num_patches"][0]))
        expanded = pieces[0]
        for index, piece in enumerate(pieces[1:]):
            expanded += processor.replace_image_token({"num_patches": num_patches}, index) + piece
        tokens = processor.tokenizer([expanded], return_tensors="pt")
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "pixel_values": pixel_values,  # one tensor of tiles per image, in order
            "num_patches": num_patches,
            "images": images,
        }

    def _vision_dtype(self) -> Any:
        return next(self._model.model.vision_tower.parameters()).dtype

    def _image_key(self, part: ImagePart) -> str:
        """Content hash of an image and its tile budget (what its vision features depend on)."""
        memo = self._image_keys.get(id(part))
        if memo is not None and memo[0] is part:
            return memo[1]
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{part.image.mode}|{part.image.size}|{part.max_tiles}|".encode())
        digest.update(part.image.tobytes())
        key = digest.hexdigest()
        self._image_keys[id(part)] = (part, key)
        while len(self._image_keys) > 4096:
            self._image_keys.pop(next(iter(self._image_keys)))
        return key

    def _encode_tiles(self, pixels: Any) -> Any:
        """Projected vision features [tiles, tokens per tile, hidden] of a tensor of tiles."""
        import torch

        model = self._model
        # Without inference mode autograd records the whole vision pass, and a cached feature tensor keeps
        # every saved activation alive (GBs at 13 tiles) besides running slower.
        with torch.inference_mode():
            return model.model.get_image_features(
                pixel_values=pixels,
                vision_feature_layer=model.config.vision_feature_layer,
                vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                return_dict=True,
            ).pooler_output

    def _image_features(self, inputs: dict[str, Any], keys: list[str], needed: range) -> tuple[Any, int]:
        """Projected vision features of images `needed` (indices), from the cache or one vision pass.
        Returns (features [tokens, hidden] in placeholder order, number of images encoded now)."""
        import torch

        model = self._model
        found: dict[int, Any] = {}
        missing = []
        for i in needed:
            cached = self._cache.get("f:" + keys[i]) if self._caching else None
            if cached is None:
                missing.append(i)
            else:
                found[i] = cached
        if missing:
            pixels = torch.cat([inputs["pixel_values"][i] for i in missing]).to(model.device, self._vision_dtype())
            features = self._encode_tiles(pixels)
            offset = 0
            for i in missing:
                n = inputs["num_patches"][i]
                image_features = features[offset : offset + n].reshape(-1, features.shape[-1])
                offset += n
                found[i] = image_features
                if self._caching:
                    self._cache.put("f:" + keys[i], image_features, tensor_bytes(image_features))
        if not found:
            return None, 0
        return torch.cat([found[i] for i in needed]), len(missing)

    def forget(self, conversation: str) -> None:
        """Drop a conversation's KV cache (its session ended)."""
        self._cache.pop("p:" + conversation)

    def _reusable_prefix(self, conversation: str | None, ids: Any, spans: list[tuple[int, int]], keys: list[str]):
        """The conversation's cached KV prefix, cropped to what the new prompt shares with it."""
        if not (self._caching and conversation):
            return None, 0
        entry = self._cache.pop("p:" + conversation)  # taken out: generation mutates it
        if entry is None:
            return None, 0
        old_ids, old_keys, cache = entry
        n = min(len(old_ids), len(ids) - 1)  # at least one new token must be computed
        common = n
        if n:
            diff = (old_ids[:n] != ids[:n]).nonzero()
            common = int(diff[0]) if len(diff) else n
        # Images inside the shared prefix must be the same images; a prefix never ends inside an image.
        for index, (start, end) in enumerate(spans):
            if start >= common:
                break
            if end > common or index >= len(old_keys) or old_keys[index] != keys[index]:
                common = start
                break
        if common <= 0:
            return None, 0
        extra = cache.get_seq_length() - common
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count removes that many tokens from the end
        return cache, common

    def _prepare(self, turns: list[Turn], max_new_tokens: int) -> dict[str, Any]:
        """Model inputs for one conversation, checked against the context length."""
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a question.")
        try:
            inputs = self.build_inputs(turns)
        except ValueError as exc:
            raise InputError(f"The model input could not be built ({summary(exc, 200)}).") from None
        ids = inputs["input_ids"][0]
        inputs["prompt_len"] = int(ids.shape[0])
        inputs["image_tokens"] = int((ids == self._model.config.image_token_id).sum())
        inputs["keys"] = [self._image_key(p) for p in inputs["images"]]
        limit = self.context_length
        if limit and inputs["prompt_len"] + max_new_tokens > limit:
            raise ContextOverflowError(inputs["prompt_len"], max_new_tokens, limit)
        return inputs

    def _generate(
        self,
        input_ids: Any,
        attention_mask: Any,
        features: Any,
        cache: Any,
        job: Job,
        *,
        max_new_tokens: int,
        min_new_tokens: int | None,
        native_decode: bool,
    ) -> tuple[Any, float | None]:
        """Greedy generation that stops within a token of `job` being cancelled and reports progress.
        Returns (generate's output, when the first token was ready)."""
        import torch
        from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        prompt_len = int(input_ids.shape[1])
        backend = self

        class _StopOnCancel(StoppingCriteria):
            first_token_at: float | None = None

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                generated = int(input_ids.shape[1]) - prompt_len
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                    backend._interrupting = None  # decoding: this criterion stops within a token
                    if native_decode:  # every step from here on is a one-token decode
                        torch.backends.mkldnn.enabled = False
                if generated % 16 == 0 or generated == 1:
                    job.report(generated, max_new_tokens, f"generating ({generated}/{max_new_tokens} tokens)")
                stop = job.cancelled() or job.out_of_time()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        watch = _StopOnCancel()
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "stopping_criteria": StoppingCriteriaList([watch]),
            _cache_kwarg(): cache if cache is not None else DynamicCache(config=self._model.config.text_config),
            "return_dict_in_generate": True,
        }
        if features is not None:
            gen_kwargs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=features.unsqueeze(0))}
        if min_new_tokens:
            gen_kwargs["min_new_tokens"] = min_new_tokens
        if self._model.generation_config.pad_token_id is None:
            gen_kwargs["pad_token_id"] = self._pad_id()
        device = self._model.device
        onednn = torch.backends.mkldnn.enabled
        try:
            with torch.inference_mode():
                output = self._model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **gen_kwargs
                )
        finally:
            torch.backends.mkldnn.enabled = onednn
        return output, watch.first_token_at

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()

    def _pad_id(self) -> int:
        pad = self._model.generation_config.pad_token_id
        if pad is None:
            pad = self._processor.tokenizer.pad_token_id
        if pad is None:
            eos = self._model.generation_config.eos_token_id
            pad = eos[0] if isinstance(eos, list) else eos
        return int(pad)

    def _result(
        self, inputs: dict[str, Any], turns: list[Turn], new_tokens: Any, job: Job, max_new_tokens: int, **fields: Any
    ) -> ChatResult:
        raw_text = self._processor.decode(new_tokens, skip_special_tokens=True)
        if job.cancelled():
            finish = "cancelled"
        elif len(new_tokens) and int(new_tokens[-1]) in self._eos_ids():
            finish = "stop"
        elif len(new_tokens) >= max_new_tokens:
            finish = "length"
        else:
            finish = "time" if job.out_of_time() else "stop"
        last_count = len(turns[-1].images)
        num_patches = inputs["num_patches"]
        return ChatResult(
            text=raw_text.strip(),
            prompt_tokens=inputs["prompt_len"],
            output_tokens=int(len(new_tokens)),
            image_tokens=inputs["image_tokens"],
            tiles=num_patches[len(num_patches) - last_count :] if last_count else [],
            finish_reason=finish,
            output_ids=new_tokens.tolist(),
            raw_text=raw_text,
            **fields,
        )

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
        ids = inputs["input_ids"][0]
        prompt_len, keys = inputs["prompt_len"], inputs["keys"]

        image_token_id = self._model.config.image_token_id
        spans = _image_spans(ids, image_token_id, inputs["num_patches"], self._processor.image_seq_length)
        cache, cached_tokens = self._reusable_prefix(conversation, ids, spans, keys)
        first_new_image = next((i for i, (start, _) in enumerate(spans) if start >= cached_tokens), len(spans))
        job.report(0, max_new_tokens, _reading(len(spans) - first_new_image, prompt_len - cached_tokens))
        self._interrupting = job
        try:
            features, encoded = self._image_features(inputs, keys, range(first_new_image, len(inputs["images"])))
            vision_done = time.monotonic()
            output, first_token_at = self._generate(
                inputs["input_ids"], inputs["attention_mask"], features, cache, job,
                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, native_decode=self.native_decode,
            )
        except Cancelled:  # stopped inside the vision pass or the prefill
            import torch

            return self._result(inputs, turns, torch.empty(0, dtype=torch.long), job, max_new_tokens,
                                seconds=time.monotonic() - started, load_seconds=load_seconds)
        finally:
            self._interrupting = None
        finished = time.monotonic()
        sequence = output.sequences[0].cpu()
        if self._caching and conversation and not job.cancelled():
            kv = getattr(output, _cache_kwarg())
            kept = kv.get_seq_length()
            self._cache.put("p:" + conversation, (sequence[:kept].clone(), keys, kv), tensor_bytes(kv))
        return self._result(
            inputs, turns, sequence[prompt_len:], job, max_new_tokens,
            seconds=finished - started,
            load_seconds=load_seconds,
            cached_tokens=cached_tokens,
            images_encoded=encoded,
            stages=_stages(started, vision_done, first_token_at, finished),
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
        width = max(inputs["prompt_len"] for inputs in batch)
        input_ids = torch.full((len(batch), width), self._pad_id(), dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, inputs in enumerate(batch):
            input_ids[row, width - inputs["prompt_len"] :] = inputs["input_ids"][0]
            attention_mask[row, width - inputs["prompt_len"] :] = 1
        job.report(0, max_new_tokens, f"reading {len(batch)} pages together (prompts of up to {width} tokens)")
        encoded, parts = [], []
        self._interrupting = job
        try:
            for inputs in batch:  # in row order: the features fill the image placeholders row by row
                features, count = self._image_features(inputs, inputs["keys"], range(len(inputs["images"])))
                encoded.append(count)
                if features is not None:
                    parts.append(features)
            vision_done = time.monotonic()
            output, first_token_at = self._generate(
                input_ids, attention_mask, torch.cat(parts) if parts else None, None, job,
                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                native_decode=False,  # several rows a step: oneDNN's matrix kernels are the faster ones
            )
        except Cancelled:  # stopped inside the vision pass or the prefill: every row is dropped
            return [
                self._result(inputs, turns, torch.empty(0, dtype=torch.long), job, max_new_tokens,
                             seconds=time.monotonic() - started, load_seconds=load_seconds, batch_size=len(batch))
                for turns, inputs in zip(conversations, batch)
            ]
        finally:
            self._interrupting = None
        finished = time.monotonic()
        stages = _stages(started, vision_done, first_token_at, finished)
        eos_ids = self._eos_ids()
        results = []
        for row, (turns, inputs) in enumerate(zip(conversations, batch)):
            new_tokens = output.sequences[row, width:].cpu()
            ends = [i for i, token in enumerate(new_tokens.tolist()) if token in eos_ids]
            if ends:  # a finished row is padded up to the longest one
                new_tokens = new_tokens[: ends[0] + 1]
            results.append(self._result(
                inputs, turns, new_tokens, job, max_new_tokens,
                seconds=finished - started, load_seconds=load_seconds, images_encoded=encoded[row], stages=dict(stages),
                batch_size=len(batch),
            ))
        return results

    @property
    def context_length(self) -> int:
        max_len = getattr(self._processor.tokenizer, "model_max_length", None) or 0
        limit = getattr(self._model.config.text_config, "max_position_embeddings", None) or max_len
        return int(min(limit, max_len) if max_len and max_len < 10**8 else limit)


def _stages(started: float, vision_done: float, first_token_at: float | None, finished: float) -> dict[str, float]:
    """Seconds per stage of one generation (no first token, as when cancelled at once: no decode)."""
    first_token_at = first_token_at or finished
    return {
        "preprocess_and_vision": round(vision_done - started, 4),
        "prefill": round(first_token_at - vision_done, 4),
        "decode": round(finished - first_token_at, 4),
    }


def _image_spans(ids: Any, image_token_id: int, num_patches: list[int], per_tile: int) -> list[tuple[int, int]]:
    """(start, end) token positions of each image's placeholder run, in order."""
    positions = (ids == image_token_id).nonzero().flatten().tolist()
    spans = []
    offset = 0
    for n in num_patches:
        count = n * per_tile
        if offset + count > len(positions):
            break
        spans.append((positions[offset], positions[offset + count - 1] + 1))
        offset += count
    return spans


def _native_gemv_is_faster(model: Any) -> bool:
    """Whether bf16 decode steps run faster on PyTorch's own CPU kernels than on oneDNN's.

    A decode step multiplies one token's vector by every weight matrix. On CPUs without AMX, oneDNN's bf16
    matrix-vector kernel is far slower than PyTorch's (decode 11 -> 20 tokens/s on InternVL3-1B widths,
    AVX-512 EPYC, measured by bench/), while the vision encoder and prefill need oneDNN's matrix-matrix
    kernels (7x faster than PyTorch's there). The results are the same up to rounding in the last bit of a
    few logits. Timed here on the model's own weights, more than the caches hold, best of three each way.
    """
    import torch

    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    weights, total = [], 0
    for module in model.model.language_model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.bfloat16:
            weights.append(module.weight)
            total += module.weight.nbytes
            if total > 256 * 2**20:
                break
    if total < 64 * 2**20:  # a tiny model: nothing to gain, and too small to time
        return False

    def seconds(onednn: bool) -> float:
        best = float("inf")
        torch.backends.mkldnn.enabled = onednn
        try:
            with torch.inference_mode():
                x = torch.zeros(1, weights[0].shape[1], dtype=torch.bfloat16)
                for _ in range(3):
                    started = time.perf_counter()
                    for w in weights:
                        if w.shape[1] == x.shape[1]:
                            torch.nn.functional.linear(x, w)
                    best = min(best, time.perf_counter() - started)
        finally:
            torch.backends.mkldnn.enabled = True
        return best

    seconds(True)  # first use builds oneDNN's kernels
    return seconds(False) < 0.8 * seconds(True)


@functools.cache
def _cache_kwarg() -> str:
    """generate's name for the KV cache: `cache` since transformers renamed `past_key_values` (a warning on
    every call under the old name), `past_key_values` before."""
    try:
        from transformers.utils import generic
    except ImportError:  # pragma: no cover - transformers is a dependency
        return "past_key_values"
    return "cache" if hasattr(generic, "_BCCacheNameMeta") else "past_key_values"


def _reading(images: int, new_tokens: int) -> str:
    """The phase before the first token: new images through the vision encoder, new tokens through prefill."""
    if not images:
        return f"reading the prompt ({new_tokens} new tokens)"
    return f"reading {images} {'image' if images == 1 else 'images'} ({new_tokens} new prompt tokens)"


def _bnb_config(quantization: str, compute_dtype: Any) -> Any:
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=KEEP_UNQUANTIZED,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_UNQUANTIZED)


__all__ = ["InternVLBackend", "KEEP_UNQUANTIZED"]
