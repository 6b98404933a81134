"""`tools/list` as agents read it (names, descriptions, input and output schemas) is kept in a reviewed file.

Agents program against these schemas, so a change to any of them shows up as a diff of
`tests/snapshots/tools_list.json`. After an intended change, regenerate it with
`MCP_VISION_UPDATE_SNAPSHOT=1 python -m pytest tests/test_tools_snapshot.py` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from mcp_vision.server import build_server
from mcp_vision.settings import Settings

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"


async def _tools_on_the_wire() -> list[dict]:
    # The default settings: what a user who configured nothing is offered.
    async with Client(build_server(Settings())) as client:
        listed = await client.list_tools()
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]


async def test_tools_list_matches_the_reviewed_snapshot():
    tools = sorted(await _tools_on_the_wire(), key=lambda t: t["name"])
    text = json.dumps(tools, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("MCP_VISION_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    assert text == expected, (
        "tools/list changed: review the difference and regenerate tests/snapshots/tools_list.json "
        "with MCP_VISION_UPDATE_SNAPSHOT=1"
    )
