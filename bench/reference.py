"""The reference: the model the way the seeds' examples run it (the model card / transformers docs usage).

`AutoProcessor` + `apply_chat_template` + `processor(text, images, return_tensors="pt")` +
`model.generate`, one request at a time; a conversation re-runs its whole history every turn. The only
additions are timers, which do not change the work: a wrapper around `get_image_features` (the vision
encoder + projector that `generate` calls) and a StoppingCriteria that notes when the first token is out.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from .timing import Call


class Reference:
    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self.processor: Any = None
        self.model: Any = None
        self._vision_seconds = 0.0

    def load(self) -> float:
        """Import torch and transformers and load the model in bf16, as the model card does. Seconds."""
        started = time.perf_counter()
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=torch.bfloat16).eval()
        inner = self.model.model
        original = inner.get_image_features

        # wraps(): generate() reads the encoder's signature to pick its arguments.
        @functools.wraps(original)
        def timed_image_features(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._vision_seconds += time.perf_counter() - start

        inner.get_image_features = timed_image_features
        return time.perf_counter() - started

    # ------------------------------------------------------------------ one request

    def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        images: list[Any] | None = None,
        videos: list[Any] | None = None,
        max_patches: int = 12,
        new_tokens: int,
        label: str,
        media_seconds: float = 0.0,
        compare_ids: list[int] | None = None,
    ) -> tuple[str, Call]:
        """One seed-style request; returns (answer as decoded, timings)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        processor, model = self.processor, self.model
        started = time.perf_counter()
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        kwargs: dict[str, Any] = {}
        if images:
            kwargs["images"] = images
            if model.config.model_type in {"qwen2_vl", "qwen2_5_vl"}:
                # The Qwen model cards' way to bound detail: a pixel budget (the server maps tiles onto 448x448 each).
                budget = max_patches * 448 * 448
                low = min(processor.image_processor.size["shortest_edge"], budget)
                kwargs["images_kwargs"] = {"size": {"shortest_edge": low, "longest_edge": budget}}
            else:
                kwargs["max_patches"] = max_patches
        if videos:
            kwargs["videos"] = videos
        inputs = processor(text=text, return_tensors="pt", **kwargs).to(model.device, dtype=torch.bfloat16)
        preprocessed = time.perf_counter()

        class FirstToken(StoppingCriteria):
            at: float | None = None

            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                if self.at is None:
                    self.at = time.perf_counter()
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        first = FirstToken()
        self._vision_seconds = 0.0
        generate_started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([first]),
                return_dict_in_generate=True,
            )
        finished = time.perf_counter()
        prompt_len = int(inputs["input_ids"].shape[1])
        ids = output.sequences[0, prompt_len:].tolist()
        answer = processor.decode(output.sequences[0, prompt_len:], skip_special_tokens=True)
        first_at = first.at or finished
        vision = self._vision_seconds
        image_token_id = model.config.image_token_id
        call = Call(
            label=label,
            seconds=media_seconds + (finished - started),
            engine_seconds=finished - started,
            stages={
                "media": media_seconds,
                "preprocess": preprocessed - started,
                "vision": vision,
                "preprocess_and_vision": (preprocessed - started) + vision,
                "prefill": (first_at - generate_started) - vision,
                "decode": finished - first_at,
            },
            prompt_tokens=prompt_len,
            image_tokens=int((inputs["input_ids"][0] == image_token_id).sum()),
            output_tokens=len(ids),
            ids=ids,
        )
        if compare_ids:
            call.extra["argmax_agreement"] = self._agreement(output.cache, prompt_len, ids, compare_ids)
        return answer, call

    def _agreement(self, cache: Any, prompt_len: int, own: list[int], other: list[int]) -> dict[str, Any]:
        """Teacher-forced: at each step of `other` (the server's tokens), would this model pick the same token
        given the same prefix? Up to the first difference both chose alike; from there this model's cache is
        cropped to the shared prefix and fed `other` in one forward pass. Not timed."""
        import torch

        n = min(len(own), len(other))
        k = next((i for i in range(n) if own[i] != other[i]), n)
        if k == n:
            return {"steps": n, "agree": n}
        agree = k  # step k itself differs: that is where the two first parted
        rest = other[k:n - 1]
        if rest:
            try:
                with torch.inference_mode():  # the cache holds inference tensors
                    extra = cache.get_seq_length() - (prompt_len + k)
                    if extra > 0:
                        cache.crop(-extra)  # transformers 5: a negative count drops that many tokens from the end
                    logits = self.model(input_ids=torch.tensor([rest]), cache=cache, use_cache=True).logits[0]
                    eos = self.model.generation_config.eos_token_id
                    for e in eos if isinstance(eos, list) else ([eos] if eos is not None else []):
                        logits[:, e] = float("-inf")  # min_new_tokens kept EOS out of every step
                    agree += int((logits.argmax(-1) == torch.tensor(other[k + 1:n])).sum())
            except Exception as exc:  # noqa: BLE001 - a diagnostic must not fail the benchmark
                return {"steps": n, "agree": None, "error": str(exc)[:200]}
        return {"steps": n, "agree": agree, "first_difference": k}


def user_message(layout: list[dict[str, Any]]) -> dict[str, Any]:
    """A user message from a layout of {"text": ...} and {"image": ...} / {"video": ...} parts."""
    content: list[dict[str, Any]] = []
    for part in layout:
        if "text" in part:
            content.append({"type": "text", "text": part["text"]})
        elif "video" in part:
            content.append({"type": "video"})
        else:
            content.append({"type": "image"})
    return {"role": "user", "content": content}


def load_image(path: str) -> tuple[Any, float]:
    """The seeds' image loading (PIL, RGB). Returns (image, seconds)."""
    from PIL import Image

    started = time.perf_counter()
    with Image.open(path) as img:
        image = img.convert("RGB")
    return image, time.perf_counter() - started


def render_page(path: str, number: int, dpi: int) -> tuple[Any, float]:
    """Render one PDF page with PyMuPDF, as a seed-style OCR peer does. Returns (image, seconds)."""
    import pymupdf
    from PIL import Image

    started = time.perf_counter()
    with pymupdf.open(path) as doc:
        pix = doc[number - 1].get_pixmap(dpi=dpi)
        image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    return image, time.perf_counter() - started


def load_video(path: str, num_frames: int) -> tuple[Any, float]:
    """transformers' own video loading (PyAV backend, uniform sampling). Returns (frames, seconds)."""
    from transformers.video_utils import load_video as hf_load_video

    started = time.perf_counter()
    frames, _metadata = hf_load_video(path, num_frames=num_frames)
    return frames, time.perf_counter() - started


__all__ = ["Reference", "load_image", "load_video", "render_page", "user_message"]
