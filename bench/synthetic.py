"""Synthetic tasks with checkable answers, rendered with Pillow, asked in the server's own words.

Each sample is the conversation a tool would send the model (built with the project's prompt files and
composition code, so training and serving cannot drift apart), the answer a right model gives, and what
scoring needs. bench/train_tiny.py trains on them; tests/support/trained.py and bench/accuracy.py score
engines on held-out ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_vision.backend.base import ImagePart, Turn
from mcp_vision.model_prompts import compare_parts, video_parts
from mcp_vision.model_prompts import PromptLibrary

if TYPE_CHECKING:
    from PIL import Image as PILImage

# Saturated colours a light background never has, so "which colour" has one answer.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 150, 50),
    "blue": (35, 70, 225),
    "yellow": (240, 205, 25),
    "purple": (140, 45, 185),
    "orange": (250, 130, 15),
}
KINDS = ("circle", "square", "triangle", "star")
TARGET = "the shape"  # what locate is asked to find

# The questions an agent asks through the tools (describe_image's `question`, compare_images', video_qa's,
# follow_up's); the tools' own words around them come from prompts/.
QUESTIONS = {
    "colour": "What colour is the shape?",
    "kind": "What kind of shape is it?",
    "count": "How many shapes are there?",
    "number": "What number is written?",
    "compare": "Which image holds the shape?",
    "video": "What colour is the shape in Frame{index}?",
    "follow_colour": "What colour was it?",
    "follow_kind": "What kind of shape was it?",
}

TASKS = ("colour", "kind", "count", "number", "page", "box", "compare", "follow_up", "video")

# Detail budgets (max_tiles) single images are shown with in training: mostly one tile (cheap), some
# tiled, so answers hold whatever tiling the server picks (the thumbnail tile comes last).
TILE_CHOICES = (1, 1, 1, 1, 1, 2)


@dataclass
class Sample:
    task: str
    turns: list[Turn]  # what the tool sends the model, ending with the user turn to answer
    answer: str  # the right answer, as the model learns to write it
    truth: Any = None  # what scoring needs beyond the answer (box tasks: x0, y0, x1, y1 in 0..1 of the image shown)
    images: list[Any] = field(default_factory=list)  # the pictures shown, in order (for tests that save them)
    family: str = "internvl"  # whose box syntax the answer is written in (grounding.FAMILIES)


# ------------------------------------------------------------------ drawing


def background(rng: random.Random, size: tuple[int, int]) -> PILImage.Image:
    """A light, low-saturation background: plain, a gradient, or noisy (never one of COLOURS)."""
    import numpy as np
    from PIL import Image

    width, height = size
    base = rng.randint(175, 245)
    tint = [min(255, max(0, base + rng.randint(-22, 22))) for _ in range(3)]
    style = rng.choice(("plain", "gradient", "noise"))
    if style == "plain":
        return Image.new("RGB", size, tuple(tint))
    nprng = np.random.default_rng(rng.getrandbits(32))
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = tint
    if style == "gradient":
        other = np.array([min(255, max(0, base + rng.randint(-30, 30))) for _ in range(3)], dtype=np.float32)
        ramp = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
        ramp = ramp[None, :, None] if ramp.shape[0] == width else ramp[:, None, None]
        pixels = pixels * (1 - ramp) + other * ramp
    else:
        pixels += nprng.normal(0, 10, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jitter(rng: random.Random, colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(min(255, max(0, c + rng.randint(-18, 18))) for c in colour)  # type: ignore[return-value]


def _star(box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    import math

    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0 - 1) / 2
    return [
        (cx + (r if i % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + i * math.pi / 5),
         cy + (r if i % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + i * math.pi / 5))
        for i in range(10)
    ]


def draw_shape(image: PILImage.Image, kind: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    """`kind` drawn inside `box` (x0, y0, x1, y1, exclusive ends); see shape_extent for what it covers."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=colour)
    elif kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=colour)
    elif kind == "triangle":
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=colour)
    elif kind == "star":
        draw.polygon(_star(box), fill=colour)
    else:
        raise ValueError(f"unknown kind {kind!r}")


def shape_extent(kind: str, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """The pixels `draw_shape` covers, as a box (a star's points stop short of its square's sides and bottom)."""
    if kind != "star":
        return tuple(float(v) for v in box)  # type: ignore[return-value]
    xs, ys = zip(*_star(box))
    return (min(xs), min(ys), max(xs) + 1, max(ys) + 1)


def random_size(rng: random.Random, low: int = 200, high: int = 640) -> tuple[int, int]:
    """Varied sizes and aspect ratios (up to about 2.5:1 either way)."""
    width = rng.randint(low, high)
    height = int(min(high, max(low * 0.6, width * rng.choice((1.0, 1.0, 0.75, 1.33, 0.5, 2.0, 0.6, 1.6)))))
    return width, height


def place(rng: random.Random, size: tuple[int, int], side: int, taken: list[tuple[int, int, int, int]]):
    """A free square of `side` pixels inside `size`, away from `taken` boxes (None after many tries)."""
    width, height = size
    for _ in range(60):
        x0, y0 = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (x0, y0, x0 + side, y0 + side)
        if all(box[2] + 6 <= t[0] or t[2] + 6 <= box[0] or box[3] + 6 <= t[1] or t[3] + 6 <= box[1] for t in taken):
            return box
    return None


def shape_picture(rng: random.Random, size: tuple[int, int], kind: str, colour: str, scale=(0.15, 0.45)):
    """One shape on a background: (image, its box in pixels)."""
    image = background(rng, size)
    side = max(12, int(min(size) * rng.uniform(*scale)))
    box = place(rng, size, side, [])
    draw_shape(image, kind, box, jitter(rng, COLOURS[colour]))
    return image, box


def number_font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's own font: the same glyphs on every machine


def number_picture(rng: random.Random, text: str, size: tuple[int, int]) -> PILImage.Image:
    """`text` printed large and dark on a light background."""
    from PIL import ImageDraw

    image = background(rng, size)
    width, height = size
    font_size = int(min(height * rng.uniform(0.3, 0.55), width * rng.uniform(0.55, 0.85) / (0.62 * len(text))))
    font = number_font(max(14, font_size))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = rng.randint(0, max(0, width - (right - left))) - left
    y = rng.randint(0, max(0, height - (bottom - top))) - top
    ink = tuple(rng.randint(0, 70) for _ in range(3))
    draw.text((x, y), text, font=font, fill=ink)
    return image


def scanned_page(rng: random.Random, text: str, size: tuple[int, int] | None = None) -> PILImage.Image:
    """A page as a scanner gives it: off-white paper, grey lines of 'text', `text` large, a slight tilt, noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width = size[0] if size else rng.randint(420, 850)
    height = size[1] if size else int(width * rng.uniform(1.15, 1.45))
    paper = rng.randint(228, 252)
    page = Image.new("RGB", (width, height), (paper, paper, max(0, paper - rng.randint(0, 10))))
    draw = ImageDraw.Draw(page)
    font = number_font(int(min(height * rng.uniform(0.09, 0.15), width * 0.8 / (0.62 * len(text)))))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = rng.randint(width // 12, max(width // 12, width - (right - left) - width // 12)) - left
    y = rng.randint(height // 10, max(height // 10, height // 2 - (bottom - top))) - top
    draw.text((x, y), text, font=font, fill=tuple([rng.randint(10, 60)] * 3))
    # Lines of body text below the number, drawn as grey bars (legible text would be a second answer).
    line_y = y + bottom + height // 12
    while line_y < height - height // 10:
        draw.rectangle((width // 12, line_y, width - rng.randint(width // 12, width // 3), line_y + max(2, height // 160)),
                       fill=(rng.randint(120, 170),) * 3)
        line_y += max(8, height // 40)
    page = page.rotate(rng.uniform(-2.5, 2.5), resample=Image.BICUBIC, fillcolor=(paper, paper, paper))
    page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    pixels = np.asarray(page).astype(np.float32)
    pixels += np.random.default_rng(rng.getrandbits(32)).normal(0, 7, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def random_number(rng: random.Random) -> str:
    digits = rng.randint(2, 4)
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def box_answer(box: tuple[float, float, float, float], size: tuple[int, int], step: int = 10,
               family: str = "internvl") -> str:
    """The family's grounding answer for `box` (pixels) in an image of `size`: 0..1000 of the image shown,
    rounded to `step` (tens: a last digit the tiny model cannot see costs it nothing, and IoU barely moves).
    InternVL writes `<ref>..</ref><box>[[x0,y0,x1,y1]]</box>`, Qwen2-VL `<|object_ref_start|>..<|object_ref_end|>
    <|box_start|>(x0,y0),(x1,y1)<|box_end|>` (its grounding format, the same 0..1000 grid)."""
    width, height = size
    x0, y0, x1, y1 = box
    coords = [round(v / side * 1000 / step) * step for v, side in ((x0, width), (y0, height), (x1, width), (y1, height))]
    x0, y0, x1, y1 = [min(1000, max(0, c)) for c in coords]
    if family == "qwen2_vl":
        return f"<|object_ref_start|>{TARGET}<|object_ref_end|><|box_start|>({x0},{y0}),({x1},{y1})<|box_end|>"
    if family != "internvl":
        raise ValueError(f"no box answers for {family!r}: internvl or qwen2_vl")
    return f"<ref>{TARGET}</ref><box>[[{x0},{y0},{x1},{y1}]]</box>"


# ------------------------------------------------------------------ tasks


class Tasks:
    """Samples of each task, drawn from a seeded generator (the same seed gives the same samples)."""

    def __init__(self, seed: int, prompts: PromptLibrary | None = None, family: str = "internvl") -> None:
        self.rng = random.Random(seed)
        self.prompts = prompts or PromptLibrary()
        self.family = family

    def sample(self, task: str, *, max_tiles: int | None = None) -> Sample:
        rng = self.rng
        tiles = max_tiles if max_tiles is not None else rng.choice(TILE_CHOICES)
        sample = getattr(self, f"_{task}")(rng, tiles)
        sample.family = self.family
        return sample

    def _describe(self, image, question: str, tiles: int) -> list[Turn]:
        return [Turn.user(question, [image], max_tiles=tiles)]  # describe_image's layout (service._ask_about_image)

    def _colour(self, rng, tiles):
        colour, kind = rng.choice(list(COLOURS)), rng.choice(KINDS)
        image, _ = shape_picture(rng, random_size(rng), kind, colour)
        return Sample("colour", self._describe(image, QUESTIONS["colour"], tiles), colour, images=[image])

    def _kind(self, rng, tiles):
        colour, kind = rng.choice(list(COLOURS)), rng.choice(KINDS)
        image, _ = shape_picture(rng, random_size(rng), kind, colour, scale=(0.25, 0.55))
        return Sample("kind", self._describe(image, QUESTIONS["kind"], tiles), kind, images=[image])

    def _count(self, rng, tiles):
        size = random_size(rng, 280, 640)
        image = background(rng, size)
        wanted, taken = rng.randint(1, 4), []
        side = int(min(size) * rng.uniform(0.12, 0.22))
        while len(taken) < wanted:
            box = place(rng, size, side, taken)
            if box is None:  # no room left: count what fits
                break
            taken.append(box)
            draw_shape(image, rng.choice(KINDS), box, jitter(rng, COLOURS[rng.choice(list(COLOURS))]))
        return Sample("count", self._describe(image, QUESTIONS["count"], tiles), str(len(taken)), images=[image])

    def _number(self, rng, tiles):
        text = random_number(rng)
        image = number_picture(rng, text, random_size(rng, 200, 560))
        return Sample("number", self._describe(image, QUESTIONS["number"], tiles), text, images=[image])

    def _digit(self, rng, tiles):
        """A curriculum step towards `number` (not a held-out task): one digit, printed large, one tile."""
        text = str(rng.randint(0, 9))
        image = number_picture(rng, text, random_size(rng, 200, 448))
        return Sample("digit", self._describe(image, QUESTIONS["number"], 1), text, images=[image])

    def _page(self, rng, tiles):
        """ocr_document's page read: the page, then the ocr prompt (ocr.PageReader's layout)."""
        text = random_number(rng)
        page = scanned_page(rng, text)
        turns = [Turn("user", [ImagePart(page, tiles), self.prompts.task("ocr").text.strip()])]
        return Sample("page", turns, text, images=[page])

    def _box(self, rng, tiles):
        """locate's grounding prompt with the target "the shape"; the answer in 0..1000 of the image shown."""
        size = random_size(rng)
        colour, kind = rng.choice(list(COLOURS)), rng.choice(KINDS)
        image, box = shape_picture(rng, size, kind, colour, scale=(0.12, 0.45))
        extent = shape_extent(kind, box)
        question = self.prompts.task("locate").render(target=TARGET).strip()
        truth = (extent[0] / size[0], extent[1] / size[1], extent[2] / size[0], extent[3] / size[1])
        answer = box_answer(extent, size, family=self.family)
        return Sample("box", self._describe(image, question, tiles), answer, truth, images=[image])

    def _compare(self, rng, tiles):
        """compare_images' layout: numbered images, the measured pixel differences, the question."""
        from mcp_vision.inputs.diff import compare_pixels

        count = rng.choice((2, 2, 2, 3))
        size = random_size(rng, 200, 448)
        holder = rng.randrange(count)
        same = rng.random() < 0.5  # a before/after pair on one background, or unrelated backgrounds
        plain = background(rng, size)
        images = []
        for index in range(count):
            image = plain.copy() if same else background(rng, size)
            if index == holder:
                side = max(12, int(min(size) * rng.uniform(0.15, 0.4)))
                draw_shape(image, rng.choice(KINDS), place(rng, size, side, []),
                           jitter(rng, COLOURS[rng.choice(list(COLOURS))]))
            images.append(image)
        diffs = [compare_pixels(images[0], other) for other in images[1:]]
        parts = compare_parts(self.prompts, images, diffs, 1, QUESTIONS["compare"])  # one tile each: cheap
        return Sample("compare", [Turn("user", parts)], f"Image-{holder + 1}", holder + 1, images=images)

    def _follow_up(self, rng, tiles):
        """A follow-up that needs the earlier turn: the session's history, then the new question alone."""
        colour, kind = rng.choice(list(COLOURS)), rng.choice(KINDS)
        image, _ = shape_picture(rng, random_size(rng), kind, colour, scale=(0.25, 0.5))
        if rng.random() < 0.5:
            first, first_answer, then, answer = QUESTIONS["kind"], kind, QUESTIONS["follow_colour"], colour
        else:
            first, first_answer, then, answer = QUESTIONS["colour"], colour, QUESTIONS["follow_kind"], kind
        turns = [*self._describe(image, first, tiles), Turn.assistant(first_answer), Turn.user(then)]
        return Sample("follow_up", turns, answer, images=[image])

    def _video2(self, rng, tiles):
        """A curriculum step towards `video` (not a held-out task): two frames only."""
        sample = self._video(rng, tiles, count=2)
        sample.task = "video2"
        return sample

    def _video(self, rng, tiles, count: int | None = None):
        """video_qa's layout for InternVL: numbered frames of one tile each, their times, the question."""
        count = count or rng.randint(2, 4)
        size = random_size(rng, 200, 480)
        colours = rng.sample(list(COLOURS), count)
        plain = background(rng, size)
        kind = rng.choice(KINDS)
        side = max(12, int(min(size) * rng.uniform(0.2, 0.45)))
        frames = []
        for colour in colours:
            frame = plain.copy()
            draw_shape(frame, kind, place(rng, size, side, []), jitter(rng, COLOURS[colour]))
            frames.append(frame)
        duration = round(rng.uniform(1.0, 8.0), 2)
        times = [duration * (i + 0.5) / count for i in range(count)]
        asked = rng.randrange(count)
        question = QUESTIONS["video"].format(index=asked + 1)
        parts = video_parts(self.prompts, frames, times, duration, question)
        return Sample("video", [Turn("user", parts)], colours[asked], asked + 1, images=frames)


def corpus(prompts: PromptLibrary | None = None) -> list[str]:
    """What the tokenizer is trained on besides the project's base corpus: the tools' words and the answers
    (without multi-digit numbers, so numbers and coordinates are written one digit a token)."""
    import re

    prompts = prompts or PromptLibrary()
    texts = [prompts.task(name).text for name in ("describe", "locate", "ocr", "compare", "video")]
    texts += [re.sub(r"\{[a-z_]+\}", " ", t) for t in prompts._scaffolding().values()]
    texts += [q.replace("{index}", "1") for q in QUESTIONS.values()]
    texts += [" ".join(COLOURS), " ".join(KINDS), f"<ref>{TARGET}</ref><box>[[1,2,3,4]]</box>", "Image-1 Image-2 Frame1"]
    return texts


# ------------------------------------------------------------------ scoring


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def answered_box(answer: str, family: str = "internvl") -> tuple[float, float, float, float] | None:
    """The first box of a grounding answer, in 0..1 of the image shown (the server's parser)."""
    from mcp_vision.grounding import parse_boxes

    found = parse_boxes(answer, family).found
    return (found[0].x0, found[0].y0, found[0].x1, found[0].y1) if found else None


def third(value: float) -> int:
    return min(2, int(value * 3))


# How far (a share of the image) a shape's centre must lie from the lines between thirds for its third to be
# clear: a centre on a line belongs to either side, and a right box's centre may fall on the other.
CLEAR = 0.03


def score(sample: Sample, answer: str) -> dict[str, bool]:
    """Whether `answer` is right; box tasks add `coarse` (its centre in the same third of the image, both ways),
    `written` (a box the server's parser reads, wherever it is) and, where the true centre lies clearly inside
    its third (CLEAR), `coarse_clear`, the same on those only;
    follow-ups that ask the colour add `colour_asked`."""
    answer = answer.strip()
    if sample.task == "follow_up" and sample.turns[-1].text == QUESTIONS["follow_colour"]:
        return {"right": answer == sample.answer, "colour_asked": answer == sample.answer}  # the colour from history
    if sample.task != "box":
        return {"right": answer == sample.answer}
    truth = sample.truth
    true_centre = ((truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2)
    clear = all(abs(v - line) >= CLEAR for v in true_centre for line in (1 / 3, 2 / 3))
    box = answered_box(answer, sample.family)
    if box is None:
        return {"right": False, "coarse": False, "written": False} | ({"coarse_clear": False} if clear else {})
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    coarse = third(centre[0]) == third(true_centre[0]) and third(centre[1]) == third(true_centre[1])
    return {"right": iou(box, truth) >= 0.5, "coarse": coarse, "written": True} | ({"coarse_clear": coarse} if clear else {})


def held_out(seed: int, per_task: int, tasks: tuple[str, ...] = TASKS, family: str = "internvl") -> list[Sample]:
    """`per_task` samples of each task, from a seed training never uses (training draws from `seed`; this
    from `seed + 1_000_003`), one tile each unless the task picks its own."""
    generator = Tasks(seed + 1_000_003, family=family)
    return [generator.sample(task) for task in tasks for _ in range(per_task)]


__all__ = [
    "COLOURS", "KINDS", "QUESTIONS", "TARGET", "TASKS", "Sample", "Tasks", "box_answer", "corpus", "held_out",
    "iou", "number_picture", "scanned_page", "score", "shape_picture", "task_accuracy",
]


def task_accuracy(backend, samples: list[Sample], max_new_tokens: int = 32) -> dict[str, dict[str, float]]:
    """Per task, the share of `samples` an engine (any Backend, loaded or not) answers right, each asked
    through its `chat` exactly as a tool asks; boxes add `coarse` (see score)."""
    from mcp_vision.backend.base import Job

    backend.load(Job())
    tally: dict[str, dict[str, list[bool]]] = {}
    for sample in samples:
        answer = backend.chat(sample.turns, Job(), max_new_tokens=max_new_tokens).text
        for key, ok in score(sample, answer).items():
            tally.setdefault(sample.task, {}).setdefault(key, []).append(ok)
    return {
        task: {key: round(sum(oks) / len(oks), 3) for key, oks in keys.items()} | {"n": len(keys["right"])}
        for task, keys in tally.items()
    }
