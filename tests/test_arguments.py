"""Arguments the schema refuses come back as one sentence naming the argument and what to use."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_vision.server import build_server
from mcp_vision.settings import Settings

pytestmark = pytest.mark.anyio

CASES = [
    ("describe_image", {"image": "a.png", "max_tiles": 0}, "max_tiles=0 is out of range: use 1 to 12."),
    ("describe_image", {"image": "a.png", "max_tiles": 41}, "max_tiles=41 is out of range: use 1 to 12."),
    ("describe_image", {"image": "a.png", "max_new_tokens": 0}, "max_new_tokens=0 is out of range: use 1 to 8192."),
    ("describe_image", {"image": ""}, "image is empty: pass a value."),
    ("describe_image", {}, "image is missing: describe_image needs it."),
    ("describe_image", {"image": "a", "max_tiles": "x"}, "max_tiles='x' is not valid: pass an integer."),
    ("ocr_document", {"document": "a.pdf", "dpi": 10}, "dpi=10 is out of range: use 36 to 600."),
    ("ocr_document", {"document": "a.pdf", "mode": "bogus"}, "mode='bogus' is not one of: 'auto', 'text_layer', 'vision'."),
    ("compare_images", {"images": ["a.png"]}, "images has 1 item: compare_images takes 2 to 4."),
    ("compare_images", {"images": ["a.png"] * 5}, "images has 5 items: compare_images takes 2 to 4."),
    ("video_qa", {"video": "v.mp4", "num_frames": 0}, "num_frames=0 is out of range: use 1 to 32."),
    ("video_qa", {"video": "v.mp4", "start": -1}, "start=-1 is out of range: use a value at least 0."),
    ("follow_up", {"session_id": "", "question": "q"}, "session_id is empty: pass a value."),
    ("describe_image", {"image": "a.png", "time_budget": 0}, "time_budget=0 is out of range: use more than 0 to 3600."),
]


@pytest.mark.parametrize("tool,args,sentence", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_a_refused_argument_is_one_sentence(tool, args, sentence):
    async with Client(build_server(Settings())) as client:
        result = await client.call_tool(tool, args)
    text = result.content[0].text
    assert result.is_error
    assert text == f"Error executing tool {tool}: {sentence}"
    assert "\n" not in text and len(text) < 300 and "pydantic" not in text


async def test_the_configured_limits_are_the_ones_stated():
    settings = Settings(max_tiles=4, max_frames=6)
    async with Client(build_server(settings)) as client:
        tiles = await client.call_tool("describe_image", {"image": "a.png", "max_tiles": 0})
        frames = await client.call_tool("video_qa", {"video": "v.mp4", "num_frames": 0})
        schema = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    assert tiles.content[0].text.endswith("use 1 to 4.") and frames.content[0].text.endswith("use 1 to 6.")
    assert schema["video_qa"]["properties"]["num_frames"]["maximum"] == 6
