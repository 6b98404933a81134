"""The order in which the model is shown what it reads: tiles as the stock processor cuts them, video frames in
time order, each after its own label. The trained model answers where a shape is from the thumbnail tile and does
not yet tell frames apart (tests/models/trained_internvl/README.md), so a swapped tile or a reversed clip would not
change its answers: these tests catch them on what reaches the model instead."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_vision.backend.base import ImagePart
from mcp_vision.server import build_server

from .support.trained import (  # noqa: F401 - trained_backend is a fixture
    TRAINED_DIR,
    plain,
    shape_video,
    trained_backend,
    trained_settings,
    with_shape,
)
from .support.wrapping import Wrapping

pytestmark = pytest.mark.anyio


def _dominant_colour(image) -> str:
    """The name of the saturated colour most of `image`'s non-grey pixels are nearest to."""
    from bench.synthetic import COLOURS

    counts: dict[str, int] = {}
    for count, (r, g, b) in image.convert("RGB").getcolors(image.width * image.height):
        if max(r, g, b) - min(r, g, b) < 60:  # the grey background and compression's fringes
            continue
        name = min(COLOURS, key=lambda n: sum((a - c) ** 2 for a, c in zip((r, g, b), COLOURS[n])))
        counts[name] = counts.get(name, 0) + count
    return max(counts, key=counts.get)


def test_the_model_gets_the_stock_processors_tiles_in_their_order():
    """A wide picture cut into tiles and a thumbnail: the engine's inputs are the processor's, tile for tile."""
    import torch
    from transformers import AutoProcessor

    from mcp_vision.backend.base import Turn
    from mcp_vision.backend.pytorch.families import family_for

    processor = AutoProcessor.from_pretrained(TRAINED_DIR)
    image, _ = with_shape(plain((1050, 400)), "circle", "red", (60, 150, 160, 250))
    with_shape(image, "square", "blue", (880, 150, 980, 250))
    inputs = family_for("internvl").build_inputs(processor, [Turn.user("What colour is the shape?", [image], max_tiles=4)])
    stock = processor.image_processor(images=[image], crop_to_patches=True, max_patches=4, return_tensors="pt")
    shown = inputs.visuals[0].pixel_values
    assert shown.shape[0] == int(stock["num_patches"][0]) > 2
    assert torch.equal(shown, stock["pixel_values"])
    assert not torch.equal(shown[0], shown[1])  # the tiles differ, so a swap would show


async def test_video_qa_shows_the_frames_in_time_order_after_their_labels(trained_backend, media_dir):
    seen = []

    class Recording(Wrapping):
        def chat(self, turns, job, **kwargs):
            seen.append(turns)
            return super().chat(turns, job, **kwargs)

    colours = ["red", "green", "blue", "yellow"]
    clip = shape_video(media_dir / "clip.mp4", colours)
    server = build_server(trained_settings(media_dir), Recording(trained_backend))
    async with Client(server) as client:
        result = await client.call_tool("video_qa", {"video": str(clip), "num_frames": 4, "question": "What colour is it?"})
    assert not result.is_error, result.content[0].text
    parts = seen[-1][-1].parts
    frames = [p.image for p in parts if isinstance(p, ImagePart)]
    assert [_dominant_colour(f) for f in frames] == colours
    labels = [p for p in parts if isinstance(p, str) and "Frame" in p]
    for index, label in enumerate(labels[: len(frames)], start=1):
        assert f"Frame{index}" in label, labels
    image_at = [i for i, p in enumerate(parts) if isinstance(p, ImagePart)]
    label_at = [i for i, p in enumerate(parts) if isinstance(p, str) and "Frame" in p][: len(frames)]
    assert all(label < image for label, image in zip(label_at, image_at))  # each label before its frame
