"""How media and questions are laid out for the model: image and frame labels, measured pixel differences,
frame times, in the words of the `scaffolding` prompt (prompts/scaffolding.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .backend.base import ImagePart, Part, VideoPart
from .prompts import PromptLibrary, split_at_image

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .inputs.diff import PixelDiff


def labelled(prompts: PromptLibrary, template: str, images: list[PILImage.Image], max_tiles: int) -> list[Part]:
    """Each image in its label (`compare_image`, `video_frame`), numbered from 1."""
    parts: list[Part] = []
    for index, image in enumerate(images, start=1):
        before, after = split_at_image(prompts.scaffold(template, index=index))
        parts += [part for part in (before, ImagePart(image, max_tiles), after) if part]
    return parts


def describe_regions(diff: PixelDiff, index: int, prompts: PromptLibrary | None = None) -> str:
    """One line for the model comparing Image-`index` (1-based, as the prompt names it) with Image-1."""
    prompts = prompts or PromptLibrary()
    if diff.regions:
        boxes = ", ".join(f"({r.x}, {r.y}, {r.width}, {r.height})" for r in diff.regions)
        return prompts.scaffold("diff_changed", index=index, similarity=diff.similarity, boxes=boxes)
    if diff.similarity >= 1.0:
        return prompts.scaffold("diff_identical", index=index, similarity=diff.similarity)
    return prompts.scaffold("diff_scattered", index=index, similarity=diff.similarity)


def compare_parts(
    prompts: PromptLibrary, images: list[PILImage.Image], diffs: list[PixelDiff], tiles: int, question: str
) -> list[Part]:
    """The numbered images, then the measured differences of each against the first, then the question."""
    measured = " ".join(describe_regions(diff, index, prompts) for index, diff in enumerate(diffs, start=2))
    return [
        *labelled(prompts, "compare_image", images, tiles),
        prompts.scaffold("compare_question", measured=measured, question=question),
    ]


def video_parts(
    prompts: PromptLibrary, frames: list[PILImage.Image], timestamps: list[float], duration: float, question: str,
    *, as_video: bool = False,
) -> list[Part]:
    """The numbered frames (one tile each), then when each was taken, then the question. `as_video`: the
    frames as one video with their times instead (for models that read video natively, such as Qwen2-VL)."""
    times = ", ".join(
        prompts.scaffold("video_time", index=index, seconds=f"{t:.2f}") for index, t in enumerate(timestamps, start=1)
    )
    shown: list[Part] = (
        [VideoPart(tuple(frames), tuple(timestamps), 1)] if as_video else labelled(prompts, "video_frame", frames, 1)
    )
    return [*shown, prompts.scaffold("video_question", times=times, duration=f"{duration:.2f}", question=question)]


__all__ = ["labelled", "describe_regions", "compare_parts", "video_parts"]
