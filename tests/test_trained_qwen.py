"""Right answers through the real server on the tiny Qwen2-VL trained here (bench/train_tiny.py --family
qwen2_vl, tests/models/trained_qwen2_vl) with the PyTorch engine: Qwen's own path (aspect-keeping resize to a
pixel budget, its chat template, multimodal rotary positions, its box syntax written with special tokens and
its 0..1000 grid) checked against the truth each picture was drawn with."""

from __future__ import annotations

import pytest
from mcp import Client

from bench.synthetic import QUESTIONS, TARGET, held_out, task_accuracy
from mcp_vision.server import build_server

from .support.trained import (  # noqa: F401 - trained_qwen_backend is a fixture
    LEARNED,
    call,
    check_box,
    compare_pair,
    TRAINED_QWEN_DIR,
    exif_rotated_jpeg,
    held_out_accuracy,
    plain,
    require_boxes,
    require_learned,
    trained_qwen_backend,
    trained_settings,
    with_shape,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not (TRAINED_QWEN_DIR / "training.json").exists(), reason="no trained Qwen2-VL committed"),
]


def _learned(task: str, measure: str = "right") -> None:
    require_learned(task, measure, TRAINED_QWEN_DIR)


def _server(backend, media_dir, **overrides):
    return build_server(trained_settings(media_dir, TRAINED_QWEN_DIR, **overrides), backend)


@pytest.mark.parametrize(("colour", "size", "box"), [("red", (400, 400), (60, 200, 200, 340)),
                                                     ("blue", (640, 320), (420, 60, 560, 200)),
                                                     ("yellow", (300, 520), (80, 90, 230, 240))])
async def test_describe_image_names_the_colour(trained_qwen_backend, media_dir, colour, size, box):
    _learned("colour")
    with_shape(plain(size), "circle", colour, box)[0].save(media_dir / "shape.png")
    async with Client(_server(trained_qwen_backend, media_dir)) as client:
        data = await call(client, "describe_image", {"image": str(media_dir / "shape.png"), "question": QUESTIONS["colour"]})
    assert data["answer"] == colour


# Where the shape is and how the picture is shaped: Qwen keeps the aspect ratio, so a box read on the wrong
# grid (pixels for 0..1000, or the resized size for the original) lands elsewhere.
PLACES = [((1050, 400), (760, 130, 900, 270)), ((360, 700), (40, 480, 180, 620)), ((500, 500), (190, 30, 310, 150))]


@pytest.mark.parametrize(("size", "box"), PLACES)
async def test_locate_finds_the_shape_in_the_original_pixels(trained_qwen_backend, media_dir, size, box):
    least = require_boxes(TRAINED_QWEN_DIR)
    image, truth = with_shape(plain(size), "square", "green", box)
    image.save(media_dir / "where.png")
    async with Client(_server(trained_qwen_backend, media_dir)) as client:
        data = await call(client, "locate", {"image": str(media_dir / "where.png"), "target": TARGET, "annotate": False})
    check_box(data, truth, size, least)


async def test_locate_reads_the_box_qwen_writes_in_special_tokens(trained_qwen_backend, media_dir):
    """Qwen2-VL writes its box between <|box_start|> and <|box_end|>, which its tokenizer flags special: decoded
    with skip_special_tokens the box was lost and locate returned none (before the engine kept the markup)."""
    _learned("box", "written")
    image, _ = with_shape(plain((640, 480)), "circle", "red", (400, 80, 560, 240))
    image.save(media_dir / "one.png")
    async with Client(_server(trained_qwen_backend, media_dir)) as client:
        data = await call(client, "locate", {"image": str(media_dir / "one.png"), "target": TARGET, "annotate": False})
    assert "<|box_start|>" in data["answer"] and data["dropped_boxes"] == 0, data["answer"]
    [found] = data["boxes"]
    assert 0 <= found["x"] < found["x"] + found["width"] <= 640 and 0 <= found["y"] < found["y"] + found["height"] <= 480


async def test_locate_obeys_exif_rotation_and_regions(trained_qwen_backend, media_dir):
    least = require_boxes(TRAINED_QWEN_DIR)
    upright, truth = with_shape(plain((360, 560)), "circle", "blue", (40, 360, 180, 500))
    path = exif_rotated_jpeg(media_dir / "sideways.jpg", upright)
    region = {"x": 0, "y": 280, "width": 360, "height": 280}
    async with Client(_server(trained_qwen_backend, media_dir)) as client:
        whole = await call(client, "locate", {"image": str(path), "target": TARGET, "annotate": False})
        part = await call(client, "locate", {"image": str(path), "target": TARGET, "annotate": False, "region": region})
    for data in (whole, part):
        check_box(data, truth, (360, 560), least)


@pytest.mark.parametrize("holder", [1, 2])
async def test_compare_images_names_the_image_holding_the_shape(trained_qwen_backend, media_dir, holder):
    _learned("compare")
    paths = compare_pair(media_dir, holder)
    async with Client(_server(trained_qwen_backend, media_dir, max_tiles=1)) as client:
        data = await call(client, "compare_images", {"images": [str(p) for p in paths],
                                                      "question": QUESTIONS["compare"], "annotate": False})
    assert data["answer"] == f"Image-{holder}"


async def test_follow_up_names_the_colour_from_history(trained_qwen_backend, media_dir):
    _learned("follow_up", "colour_asked")
    with_shape(plain((420, 420)), "triangle", "purple", (120, 120, 300, 300))[0].save(media_dir / "p.png")
    async with Client(_server(trained_qwen_backend, media_dir)) as client:
        first = await call(client, "describe_image", {"image": str(media_dir / "p.png"), "question": QUESTIONS["kind"]})
        then = await call(client, "follow_up", {"session_id": first["session_id"], "question": QUESTIONS["follow_colour"]})
    assert then["answer"] == "purple"
    assert then["usage"]["cached_tokens"] > 0  # the picture's turn was reused, not recomputed


def test_held_out_accuracy_of_the_committed_weights(trained_qwen_backend):
    recorded = held_out_accuracy(TRAINED_QWEN_DIR)
    learned = tuple(task for task, got in recorded.items() if got["right"] >= LEARNED)
    if not learned:
        pytest.skip("the committed Qwen2-VL answers no task: nothing to re-measure")
    measured = task_accuracy(trained_qwen_backend, held_out(0, 8, learned, "qwen2_vl"))
    for task in learned:
        assert measured[task]["right"] >= recorded[task]["right"] - 0.15, (task, measured[task], recorded[task])
