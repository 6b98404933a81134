"""The trained tiny InternVL (tests/models/trained_internvl) and Qwen2-VL (tests/models/trained_qwen2_vl), made
by bench/train_tiny.py: their settings, one loaded engine each per test session, and pictures, scans and videos
with known right answers."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from bench.synthetic import COLOURS, draw_shape, jitter, scanned_page, shape_extent
from mcp_vision.settings import Settings

TRAINED_DIR = Path(__file__).resolve().parents[1] / "models" / "trained_internvl"
TRAINED_QWEN_DIR = Path(__file__).resolve().parents[1] / "models" / "trained_qwen2_vl"


# Held-out accuracy (bench/train_tiny.py's own measure, in training.json) from which a task counts as learned:
# the end-to-end tests of a task the committed checkpoint does not answer skip and say so, and run as soon as
# a better checkpoint is committed.
LEARNED = 0.9


def held_out_accuracy(model_dir: Path = TRAINED_DIR) -> dict[str, dict[str, float]]:
    import json

    return json.loads((model_dir / "training.json").read_text())["held_out"]


def require_learned(task: str, measure: str = "right", model_dir: Path = TRAINED_DIR) -> None:
    """Skip unless the committed checkpoint answers `task` (its recorded held-out `measure` >= LEARNED)."""
    got = held_out_accuracy(model_dir).get(task, {}).get(measure, 0.0)
    if got < LEARNED:
        pytest.skip(f"the committed {model_dir.name} does not answer {task!r} ({measure} {got:.0%} held-out < "
                    f"{LEARNED:.0%}); train a better one with bench/train_tiny.py")


# Boxes are held to IoU >= 0.5 once a checkpoint places them (held-out IoU), else to the right third.
BOX_IOU = 0.5


def require_boxes(model_dir: Path = TRAINED_DIR) -> float:
    """The IoU the box tests hold to: BOX_IOU where the checkpoint places boxes, 0 (the right third) where only
    coarsely; skip where not even that."""
    try:
        require_learned("box", model_dir=model_dir)
        return BOX_IOU
    except pytest.skip.Exception:
        require_learned("box", "coarse_clear", model_dir)  # the tests' shapes sit clearly inside their thirds
        return 0.0


async def call(client, tool: str, args: dict) -> dict:
    """A tool's structured result, asserting it is not an error."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


def check_box(data: dict, truth, size, least_iou: float) -> None:
    """The first box overlaps the drawn shape (in the original image's pixels)."""
    assert data["boxes"], f"no box in {data['answer']!r}"
    box = data["boxes"][0]
    assert (data["image"]["width"], data["image"]["height"]) == size
    if least_iou:
        assert iou_pixels(box, truth) >= least_iou, (box, truth, data["answer"])
    else:
        assert same_third(box, truth, size), (box, truth, data["answer"])


def compare_pair(media_dir: Path, holder: int) -> list[Path]:
    """Two pictures on one background, the shape in picture `holder` (1 or 2) only: compare_images' question."""
    paths = []
    for index in (1, 2):
        image = plain((400, 400), (205, 215, 225))
        if index == holder:
            with_shape(image, "star", "orange", (120, 140, 260, 280))
        paths.append(media_dir / f"image{index}.png")
        image.save(paths[-1])
    return paths


def trained_settings(media_dir: Path, model_dir: Path = TRAINED_DIR, **overrides) -> Settings:
    """The PyTorch engine in float32 on CPU (greedy answers exactly repeatable), small tile budgets."""
    values = dict(
        model=str(model_dir), device="cpu", backend="local", quantization="none", dtype="float32",
        allowed_dirs=(media_dir,), max_new_tokens=32, max_tiles=2,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def trained_backend():
    """The trained checkpoint loaded once for the whole session (the engine the server would create)."""
    from mcp_vision.backend import create_backend
    from mcp_vision.backend.base import Job

    backend = create_backend(trained_settings(Path("/nonexistent")))
    backend.load(Job())
    return backend


@pytest.fixture(scope="session")
def trained_qwen_backend():
    """The trained Qwen2-VL checkpoint, loaded once for the whole session."""
    from mcp_vision.backend import create_backend
    from mcp_vision.backend.base import Job

    backend = create_backend(trained_settings(Path("/nonexistent"), TRAINED_QWEN_DIR))
    backend.load(Job())
    return backend


def plain(size: tuple[int, int], shade: tuple[int, int, int] = (214, 218, 222)) -> Image.Image:
    return Image.new("RGB", size, shade)


def with_shape(
    image: Image.Image, kind: str, colour: str, box: tuple[int, int, int, int], seed: int = 0
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """`image` with one shape drawn in `box`; returns it and the pixels the shape covers (x0, y0, x1, y1)."""
    draw_shape(image, kind, box, jitter(random.Random(seed), COLOURS[colour]))
    return image, shape_extent(kind, box)


def exif_rotated_jpeg(path: Path, upright: Image.Image) -> Path:
    """A JPEG whose pixels are stored turned a quarter left, with EXIF orientation 6 ("turn right to
    show"): a viewer that obeys EXIF shows `upright`."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="JPEG", quality=95, exif=exif)
    return path


def image_pdf(path: Path, scan: Image.Image) -> Path:
    """A one-page PDF holding only `scan` (no text layer), sized so that ocr_document's 150 dpi rendering gives
    back the scan's own pixels."""
    import pymupdf

    buf = io.BytesIO()
    scan.save(buf, format="PNG")
    doc = pymupdf.open()
    page = doc.new_page(width=scan.width * 72 / 150, height=scan.height * 72 / 150)
    page.insert_image(page.rect, stream=buf.getvalue(), keep_proportion=False)
    doc.save(path)
    return path


def scanned_pdf(path: Path, text: str, seed: int = 0) -> Path:
    """A one-page PDF holding only a scan (no text layer) of a page with `text` printed on it; the page is
    sized so that ocr_document's 150 dpi rendering gives back the scan's own pixels."""
    return image_pdf(path, scanned_page(random.Random(seed), text, (600, 780)))


def shape_video(path: Path, colours: list[str], kind: str = "circle", seconds_each: int = 1, fps: int = 8) -> Path:
    """An mp4 whose shape changes colour each second (and moves a little), one colour per segment."""
    import av
    import numpy as np

    width, height = 320, 240
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, colour in enumerate(colours):
            frame_image, _ = with_shape(plain((width, height)), kind, colour, (40 + 50 * index, 60, 140 + 50 * index, 160))
            pixels = np.asarray(frame_image)
            for _ in range(fps * seconds_each):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def iou_pixels(box: dict, truth: tuple[float, float, float, float]) -> float:
    """IoU of a locate box ({x, y, width, height}, original pixels) with `truth` (x0, y0, x1, y1)."""
    from bench.synthetic import iou

    return iou((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]), truth)


def same_third(box: dict, truth: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    """Whether the box's centre lies in the same third of the image as the truth's, across and down."""
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    tx, ty = (truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2
    return int(3 * cx / size[0]) == int(3 * tx / size[0]) and int(3 * cy / size[1]) == int(3 * ty / size[1])


__all__ = [
    "BOX_IOU", "LEARNED", "TRAINED_DIR", "TRAINED_QWEN_DIR", "call", "check_box", "compare_pair", "require_boxes",
    "trained_qwen_backend", "exif_rotated_jpeg", "held_out_accuracy", "image_pdf", "require_learned", "iou_pixels", "plain", "same_third", "scanned_pdf", "shape_video",
    "trained_backend", "trained_settings", "with_shape",
]
