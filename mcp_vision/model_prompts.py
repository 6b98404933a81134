"""The words the model reads: the prompt files, and how media and questions are laid out in their words.

Prompts live in plain files (`prompts/*.md`): a header of `key: value` lines, a `---` line, the text.
Task prompts (`kind: task`) are what the tools send the model; the `scaffolding` task prompt holds the
templates that label images and frames, state measured differences and frame times (the layout functions
below); MCP prompts (`kind: mcp`) are the files the prompt menu (prompt_menu.py) lists for people to pick.
`MCP_VISION_PROMPTS_DIR` points at a directory whose files override the shipped ones by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .backend.base import ImagePart, Part, VideoPart

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .inputs.diff import PixelDiff

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")  # `{name}` in a prompt file's text


@dataclass(frozen=True)
class PromptArgumentSpec:
    name: str
    description: str
    required: bool


@dataclass(frozen=True)
class PromptFile:
    name: str
    kind: str
    description: str
    text: str
    title: str | None = None
    arguments: tuple[PromptArgumentSpec, ...] = field(default_factory=tuple)

    def render(self, **values: str) -> str:
        """Fill `{name}` placeholders in one pass (a value's own braces stay as they are); unknown ones are left."""
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)


def shipped_prompts_dir() -> Path:
    """`mcp_vision/prompts` inside a wheel; the repository's `prompts/` in a source checkout."""
    packaged = Path(__file__).resolve().parent / "prompts"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "prompts"


def parse_prompt(path: Path) -> PromptFile:
    raw = path.read_text(encoding="utf-8")
    header, sep, body = raw.partition("\n---\n")
    if not sep:
        raise ValueError(f"{path}: a prompt file needs a header, a '---' line, then the prompt text")
    meta: dict[str, str] = {}
    arguments: list[PromptArgumentSpec] = []
    for line in header.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"{path}: header line {line!r} is not 'key: value'")
        key, value = key.strip().lower(), value.strip()
        if key == "argument":
            # argument: name | description | required/optional
            parts = [p.strip() for p in value.split("|")]
            required = len(parts) > 2 and parts[2].lower() == "required"
            arguments.append(PromptArgumentSpec(parts[0], parts[1] if len(parts) > 1 else "", required))
        else:
            meta[key] = value
    name = meta.get("name") or path.stem
    kind = meta.get("kind", "task")
    if kind not in {"task", "mcp"}:
        raise ValueError(f"{path}: kind must be 'task' or 'mcp', not {kind!r}")
    return PromptFile(
        name=name,
        kind=kind,
        description=meta.get("description", ""),
        title=meta.get("title"),
        text=body.strip() + "\n",
        arguments=tuple(arguments),
    )


class PromptLibrary:
    """All prompt files, loaded once at startup."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self._prompts: dict[str, PromptFile] = {}
        self._templates: dict[str, str] | None = None
        dirs = [shipped_prompts_dir()] + ([override_dir] if override_dir else [])
        for directory in dirs:
            if not directory.is_dir():
                if directory is override_dir:
                    raise ValueError(f"MCP_VISION_PROMPTS_DIR={directory} is not a directory")
                continue
            for path in sorted(directory.glob("*.md")):
                prompt = parse_prompt(path)
                self._prompts[prompt.name] = prompt

    def task(self, name: str) -> PromptFile:
        prompt = self._prompts.get(name)
        if prompt is None or prompt.kind != "task":
            raise KeyError(f"no task prompt named {name!r} in {shipped_prompts_dir()}")
        return prompt

    def scaffold(self, name: str, **values: object) -> str:
        """A template line of the `scaffolding` prompt with `values` filled in (`\\n` becomes a line break;
        `{image}`, where a template has it, stays for `split_at_image`)."""
        templates = self._scaffolding()
        if name not in templates:
            raise KeyError(f"no template {name!r} in the scaffolding prompt (prompts/scaffolding.md)")
        filled = PromptFile(name, "task", "", templates[name]).render(**{k: str(v) for k, v in values.items()})
        return filled.replace("\\n", "\n")

    def _scaffolding(self) -> dict[str, str]:
        if self._templates is None:
            templates: dict[str, str] = {}
            for line in self.task("scaffolding").text.splitlines():
                key, colon, template = line.partition(": ")
                if colon and key.strip():
                    templates[key.strip()] = template
            self._templates = templates
        return self._templates

    def mcp_prompts(self) -> list[PromptFile]:
        return [p for p in self._prompts.values() if p.kind == "mcp"]


def split_at_image(text: str) -> tuple[str, str]:
    """The text before and after a template's `{image}` marker (all of it before, when it has none)."""
    before, _, after = text.partition("{image}")
    return before, after


# ---------------------------------------------------------------------------------------------- layout
# How media and questions are laid out for the model: image and frame labels, measured pixel differences,
# frame times, in the words of the `scaffolding` prompt (prompts/scaffolding.md).


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


__all__ = [
    "PLACEHOLDER", "split_at_image", "PromptLibrary", "PromptFile", "PromptArgumentSpec", "parse_prompt",
    "shipped_prompts_dir", "labelled", "describe_regions", "compare_parts", "video_parts",
]
