"""The OpenVINO engine: the same checkpoint, converted once (convert.py), run by OpenVINO on a CPU.

What it shares with the PyTorch engine (through local_engine.LocalEngine, their common base): the stock processor
and chat template, the inputs and their checks, the vision-feature cache, the KV prefix reuse across a
conversation, batching, results. What it supplies through the base's hooks: loading (conversion on first use, in a child process, then compiling),
the vision pass (the converted vision tower, int8), and generation: a greedy loop of our own on the stateful
language model (openvino-genai's VLMPipeline takes no `inputs_embeds` layout like this one), with the prompt
read in chunks so a cancelled call stops within a chunk, and the KV cache of a conversation kept by copying
the model's state out after a call and back in, cropped to the shared prefix, on the next.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import Cancelled, InputError, ModelUnavailableError, summary
from ..local_engine import Generated, LoadedModel, LocalEngine
from ..pytorch.families import INTERNVL

if TYPE_CHECKING:
    from ...settings import Settings
    from ..base import ChatResult, Job, Turn
    from ..pytorch.model_inputs import ModelInputs, Visual

log = logging.getLogger(__name__)

PREFILL_CHUNK = 512  # prompt tokens a forward pass while reading the prompt: the cancellation grain (256: 5% slower)
VISION_CHUNK = 2  # tiles per vision pass, for the same reason


def cache_root(settings: Settings) -> Path:
    if settings.openvino_cache is not None:
        return settings.openvino_cache
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mcp-vision" / "openvino"


def local_checkpoint(settings: Settings, source: str, local_only: bool) -> Path:
    """The checkpoint as a directory on disk (a hub id resolves to its snapshot in the Hugging Face cache)."""
    if os.path.isdir(source):
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=local_only))
    except Exception as exc:  # noqa: BLE001 - the hub raises many kinds; one sentence says what to do
        raise ModelUnavailableError(
            f"MCP_VISION_MODEL={settings.model!r} could not be found on disk for conversion ({summary(exc, 160)}): "
            "run `mcp-vision-internvl download` first or set MCP_VISION_MODEL to a local directory."
        ) from None


def run_conversion(source: Path, target: Path, *, language: str, vision: str, report, background: bool = False,
                   log_level: str = "INFO") -> None:
    """Convert in a child process: its float32 PyTorch copy of the model is gone when it exits, and whatever
    the converters print cannot reach our stdout (the MCP channel). Progress lines come back on a pipe;
    the frameworks' own warnings reach the log only at DEBUG. `background`: at a lower priority on part of the
    cores, so an engine answering meanwhile keeps the rest."""
    read_fd, write_fd = os.pipe()
    command = [
        sys.executable, "-m", "mcp_vision.backend.openvino.convert", str(source), str(target),
        "--language", language, "--vision", vision, "--progress-fd", str(write_fd), "--log-level", log_level,
        *(["--background"] if background else []),
    ]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(),
                             pass_fds=(write_fd,))
    os.close(write_fd)
    last = ""
    with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as progress:
        for line in progress:
            last = line.strip()
            if last:
                report(last)
    if child.wait() != 0:
        raise ModelUnavailableError(
            f"Converting the model to OpenVINO failed (exit {child.returncode}; last step: {last or 'none'}): "
            "see the server's log, or set MCP_VISION_BACKEND=local to use the PyTorch engine."
        )


class StateKV:
    """A conversation's KV cache copied out of the stateful model: per layer a key and a value array
    [rows, kv_heads, tokens, head_dim], in the state variables' order."""

    def __init__(self, arrays: list[Any]) -> None:
        self.arrays = arrays

    def get_seq_length(self) -> int:
        return int(self.arrays[0].shape[2]) if self.arrays else 0

    def crop(self, count: int) -> None:
        """Keep the first `count` tokens; a negative count removes that many from the end (as transformers)."""
        keep = count if count >= 0 else self.get_seq_length() + count
        self.arrays = [a[:, :, :keep] for a in self.arrays]

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays)


class OpenVINOBackend(LocalEngine):
    """InternVL on OpenVINO: loads lazily, once, under a lock; `chat` runs on the inference worker thread."""

    engine = "openvino"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._request: Any = None  # the stateful language model's
        self._vision_request: Any = None
        self._embeddings_request: Any = None
        self._state_names: list[str] = []
        self._manifest: dict[str, Any] = {}
        self._manifest_dir: Path | None = None
        self._run_lock = threading.RLock()  # one generation at a time owns the stateful request
        self._checkpoint: Path | None = None
        # Converting while another engine answers: the converter runs at a lower priority on part of the cores.
        self.background = False

    # ---------------------------------------------------------------- loading

    def runs_checkpoint(self) -> bool:
        """Whether the configured checkpoint is one this engine runs (InternVL); True when it cannot be read,
        so that loading says why."""
        from ..pytorch.loading import read_config

        try:
            return getattr(read_config(self._settings)[2], "model_type", None) == "internvl"
        except ModelUnavailableError:
            return True

    def _load_model(self, job: Job) -> LoadedModel:
        job.report(0, None, f"loading model {self._settings.model} (OpenVINO)")
        return self._compile(self.prepare(job), job)

    def _target(self) -> Path:
        """Where the configured checkpoint's conversion lives (or will), in the conversion cache."""
        s = self._settings
        from ..pytorch.loading import read_config

        source, local_only, config = read_config(s)
        if getattr(config, "model_type", None) != "internvl":
            raise ModelUnavailableError(
                f"The OpenVINO engine runs InternVL checkpoints, and MCP_VISION_MODEL={s.model!r} is a "
                f"{getattr(config, 'model_type', 'unknown')!r} model: set MCP_VISION_BACKEND=local for it."
            )
        self._checkpoint = local_checkpoint(s, source, local_only)
        from .convert import converted_dir

        return converted_dir(cache_root(s), self._checkpoint, s.openvino_weights, s.openvino_vision)

    def converted(self) -> bool:
        """Whether the configured checkpoint is converted already (loading is then seconds, not minutes); False
        when it cannot be told, so that loading says why."""
        from .convert import is_converted

        try:
            return is_converted(self._target())
        except ModelUnavailableError:
            return False

    def prepare(self, job: Job) -> Path:
        """The conversion of the configured checkpoint, made first if there is none (minutes, once)."""
        s = self._settings
        target = self._target()
        from .convert import is_converted

        if not is_converted(target):
            job.report(0, None, "converting the model to OpenVINO (once; minutes)")
            target.parent.mkdir(parents=True, exist_ok=True)
            run_conversion(self._checkpoint, target, language=s.openvino_weights, vision=s.openvino_vision,
                           report=lambda step: job.report(0, None, f"converting to OpenVINO: {step}"),
                           background=self.background, log_level=s.log_level)
        return target

    def _compile(self, target: Path, job: Job) -> LoadedModel:
        import openvino as ov
        from transformers import AutoConfig, AutoProcessor, GenerationConfig

        s = self._settings
        manifest = json.loads((target / "mcp_vision_openvino.json").read_text())
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(target / "compiled")})
        options: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if s.threads:
            options["INFERENCE_NUM_THREADS"] = s.threads
        language_options = dict(options)
        if s.openvino_weights == "f16" and s.threads == 1:
            # OpenVINO 2026.4 crashes (SIGFPE) compiling the bf16 language model for one thread.
            language_options["INFERENCE_PRECISION_HINT"] = "f32"
        job.report(0, None, "compiling the OpenVINO models")
        try:
            vision = core.compile_model(target / "vision.xml", "CPU", options)
            embeddings = core.compile_model(target / "embeddings.xml", "CPU", options)
            language = core.compile_model(target / "language.xml", "CPU", language_options)
            processor = AutoProcessor.from_pretrained(target / "processor", local_files_only=True)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"The OpenVINO conversion in {target} could not be loaded ({summary(exc, 200)}): delete that "
                "directory to convert again, or set MCP_VISION_BACKEND=local."
            ) from None
        config = AutoConfig.from_pretrained(target / "processor", local_files_only=True)
        try:
            generation = GenerationConfig.from_pretrained(target / "processor", local_files_only=True)
        except OSError:
            generation = GenerationConfig.from_model_config(config)
        self._request = language.create_infer_request()
        self._state_names = sorted((state.name for state in self._request.query_state()), key=_layer_order)
        self._vision_request = vision.create_infer_request()
        self._embeddings_request = embeddings.create_infer_request()
        self._manifest = manifest
        self._manifest_dir = target
        return LoadedModel(
            processor=processor, family=INTERNVL, config=config, generation_config=generation, device="cpu",
            dtype=f"openvino {s.openvino_weights}", quantization=f"language {s.openvino_weights}, vision {s.openvino_vision}",
            described=f"OpenVINO, language model {s.openvino_weights}, vision {s.openvino_vision}, from {target}",
        )

    def parameter_counts(self) -> tuple[int, int] | None:
        params = self._manifest.get("parameters")
        return (int(params["vision"]), int(params["language"])) if params else None

    def compute_rate(self) -> float | None:
        return None  # OpenVINO's int8 and int4 kernels are not what a torch product measures: the fixed guess

    # ---------------------------------------------------------------- the replaced parts

    def chat(self, turns: list[Turn], job: Job, *, max_new_tokens: int, min_new_tokens: int | None = None,
             conversation: str | None = None) -> ChatResult:
        with self._run_lock:
            return super().chat(turns, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                conversation=conversation)

    def chat_batch(self, conversations: list[list[Turn]], job: Job, *, max_new_tokens: int,
                   min_new_tokens: int | None = None) -> list[ChatResult]:
        with self._run_lock:
            return super().chat_batch(conversations, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)

    def _encode(self, visuals: list[Visual]) -> list[Any]:
        """InternVL's vision pass on the converted tower: each visual's tiles' features, joined [tokens, hidden]."""
        import torch

        features = self._encode_tiles(torch.cat([v.pixel_values for v in visuals]))
        out, offset = [], 0
        for v in visuals:
            out.append(features[offset : offset + v.tiles].reshape(-1, features.shape[-1]))
            offset += v.tiles
        return out

    def _encode_tiles(self, pixels: Any) -> Any:
        """Projected features [tiles, tokens per tile, hidden] of a tensor of tiles, a few tiles a pass, so a
        cancelled call stops between passes."""
        import numpy as np
        import torch

        array = pixels.numpy().astype(np.float32, copy=False)
        parts = []
        for start in range(0, len(array), VISION_CHUNK):
            if self.interrupted():
                raise Cancelled
            self._vision_request.infer({"pixel_values": array[start : start + VISION_CHUNK]})
            parts.append(self._vision_request.get_output_tensor(0).data.copy())
        return torch.from_numpy(np.concatenate(parts))

    def _embed(self, ids: Any) -> Any:
        self._embeddings_request.infer({"input_ids": ids})
        return self._embeddings_request.get_output_tensor(0).data.copy()

    def _set_state(self, cache: StateKV | None, rows: int) -> None:
        import numpy as np
        import openvino as ov

        heads, dim = int(self._manifest["kv_heads"]), int(self._manifest["head_dim"])
        states = {state.name: state for state in self._request.query_state()}
        for i, name in enumerate(self._state_names):
            if cache is not None:
                value = np.ascontiguousarray(cache.arrays[i])
            else:
                value = np.zeros((rows, heads, 0, dim), dtype=np.float32)
            states[name].state = ov.Tensor(value)

    def _read_state(self) -> StateKV:
        states = {state.name: state for state in self._request.query_state()}
        return StateKV([states[name].state.data.copy() for name in self._state_names])

    def prefill(self, ids: Any, mask: Any, features: Any, cache: StateKV | None, job: Job) -> tuple[Any, Any]:
        """Read the prompt (after the cached prefix) into the model's state, a chunk a pass. Returns (the last
        position's logits [rows, vocab], every position's rotary position [rows, tokens])."""
        import numpy as np

        rows = ids.shape[0]
        past = cache.get_seq_length() if cache is not None else 0
        self._set_state(cache, rows)
        new = ids[:, past:]
        embeds = self._embed(new)
        if features is not None:
            where = new == self._loaded.config.image_token_id
            if int(where.sum()) != len(features):
                raise InputError(
                    f"The prompt holds {int(where.sum())} image tokens for {len(features)} image features: "
                    "this checkpoint's processor and model disagree."
                )
            embeds[where] = features.numpy() if hasattr(features, "numpy") else features
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        for start in range(0, new.shape[1], PREFILL_CHUNK):
            if job.cancelled():
                raise Cancelled
            end = min(start + PREFILL_CHUNK, new.shape[1])
            self._request.infer({
                "inputs_embeds": embeds[:, start:end],
                "attention_mask": mask[:, : past + end],
                "position_ids": positions[:, past + start : past + end],
            })
        return self._request.get_tensor("logits").data[:, -1, :].copy(), positions

    def step(self, tokens: Any, mask: Any, positions: Any) -> Any:
        """One decode step: `tokens` [rows] at `positions` [rows, 1], `mask` covering every token so far
        including these. Returns the logits [rows, vocab]."""
        self._request.infer({"inputs_embeds": self._embed(tokens[:, None]), "attention_mask": mask,
                             "position_ids": positions})
        return self._request.get_tensor("logits").data[:, -1, :]

    def _generate(self, input_ids: Any, attention_mask: Any, batch: list[ModelInputs], features: dict[str, Any],
                  cache: Any, job: Job, *, max_new_tokens: int, min_new_tokens: int | None) -> Generated:
        """Greedy generation on the stateful model; stops within a token of `job` being cancelled or out of
        time, and within a prompt chunk while the prompt is read. The KV cache kept is the model's state, copied
        out only when asked for."""
        import numpy as np
        import torch

        from ...page_text import CHECK_EVERY, MIN_SPAN_TOKENS, TAIL_TOKENS, looping

        ids = input_ids.numpy().astype(np.int64)
        mask = attention_mask.numpy().astype(np.int64)
        rows = ids.shape[0]
        logits, positions = self.prefill(ids, mask, features.get("image"), cache, job)
        first_token_at = time.monotonic()
        self.decoding()  # the loop below stops within a token
        eos = np.array(sorted(self._eos_ids()), dtype=np.int64)
        pad = self._pad_id()
        done = np.zeros(rows, dtype=bool)
        next_position = positions[:, -1:] + 1
        generated: list[Any] = []
        while True:
            if min_new_tokens and len(generated) < min_new_tokens and len(eos):
                logits = logits.copy()
                logits[:, eos] = -np.inf
            token = logits.argmax(-1).astype(np.int64)
            token[done] = pad
            generated.append(token)
            done |= np.isin(token, eos)
            count = len(generated)
            if count >= MIN_SPAN_TOKENS and count % CHECK_EVERY == 0:  # rows caught in a repetition loop stop
                recent = np.stack(generated[-TAIL_TOKENS:], axis=1)
                done |= np.array([looping(row) for row in recent.tolist()])
            if count % 16 == 0 or count == 1:
                job.report(count, max_new_tokens, f"generating ({count}/{max_new_tokens} tokens)")
            if done.all() or count >= max_new_tokens or job.cancelled() or job.out_of_time():
                break
            mask = np.concatenate([mask, np.ones((rows, 1), dtype=np.int64)], axis=1)
            logits = self.step(token, mask, next_position)
            next_position = next_position + 1
        sequences = torch.from_numpy(np.concatenate([ids, np.stack(generated, axis=1)], axis=1))
        return Generated(sequences, first_token_at, self._read_state)


def _layer_order(name: str) -> tuple[int, int]:
    """past.3.key -> (3, 0); past.3.value -> (3, 1)."""
    parts = name.split(".")
    try:
        return int(parts[1]), 0 if parts[2] == "key" else 1
    except (IndexError, ValueError):
        return 10**6, 0


__all__ = ["OpenVINOBackend", "StateKV", "cache_root", "run_conversion"]
