"""MCP prompts: the menu people pick from, through the in-memory client in both protocol eras."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_vision.prompt_menu import render
from mcp_vision.model_prompts import PromptLibrary, parse_prompt
from mcp_vision.server import build_server

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]  # auto negotiates the stateless 2026-07-28 protocol; legacy the 2025-11-25 handshake
TOOLS = {"describe_image", "follow_up", "ocr_document", "compare_images", "video_qa", "locate"}
MENU = {
    "review-ui-screenshot": ({"screenshot"}, {"focus"}),
    "extract-table": ({"document"}, {"pages", "table"}),
    "explain-chart": ({"chart"}, {"question"}),
    "diff-screenshots": ({"before", "after"}, {"focus"}),
    "walk-through-recording": ({"video"}, {"question"}),
}
# The tool each prompt tells the agent to call first, with the values it must pass on.
FIRST_CALL = {
    "review-ui-screenshot": ("describe_image", {"screenshot": "shots/login.png"}),
    "extract-table": ("ocr_document", {"document": "reports/q3.pdf"}),
    "explain-chart": ("describe_image", {"chart": "https://example.com/sales.png"}),
    "diff-screenshots": ("compare_images", {"before": "before.png", "after": "after.png"}),
    "walk-through-recording": ("video_qa", {"video": "~/Videos/bug.mp4"}),
}


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_list_shows_the_menu_with_arguments(settings, mode):
    async with Client(build_server(settings), mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(prompts) == set(MENU)
    for name, (required, optional) in MENU.items():
        prompt = prompts[name]
        assert prompt.title and prompt.description, name
        arguments = {a.name: a for a in prompt.arguments or []}
        assert {n for n, a in arguments.items() if a.required} == required, name
        assert {n for n, a in arguments.items() if not a.required} == optional, name
        assert all(a.description for a in arguments.values()), name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(FIRST_CALL))
async def test_prompts_get_renders_the_arguments_into_a_tool_call(settings, mode, name):
    tool, values = FIRST_CALL[name]
    async with Client(build_server(settings), mode=mode) as client:
        result = await client.get_prompt(name, values)
    assert len(result.messages) == 1
    message = result.messages[0]
    assert message.role == "user"
    text = message.content.text
    assert f"`{tool}`" in text
    for value in values.values():
        assert f'"{value}"' in text  # quoted as the tool argument's value
    assert not re.search(r"\{[a-z_]+\}", text), "a placeholder was left unfilled"


@pytest.mark.parametrize("mode", MODES)
async def test_optional_arguments_appear_only_when_given(settings, mode):
    async with Client(build_server(settings), mode=mode) as client:
        bare = await client.get_prompt("extract-table", {"document": "a.pdf"})
        full = await client.get_prompt("extract-table", {"document": "a.pdf", "pages": "2-3", "table": "Table 4"})
    bare_text, full_text = bare.messages[0].content.text, full.messages[0].content.text
    assert '`pages` set to "2-3"' in full_text and "Table 4" in full_text
    assert "`pages` set to" not in bare_text and "The table wanted" not in bare_text
    assert "`ocr_document` with `document` set to \"a.pdf\"" in bare_text


@pytest.mark.parametrize("mode", MODES)
async def test_missing_required_argument_is_a_clear_invalid_params_error(settings, mode):
    async with Client(build_server(settings), mode=mode) as client:
        with pytest.raises(MCPError) as missing:
            await client.get_prompt("diff-screenshots", {"before": "a.png"})
        with pytest.raises(MCPError) as blank:
            await client.get_prompt("review-ui-screenshot", {"screenshot": "  "})
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("explain-chart", {"chart": "c.png", "image": "c.png"})
    assert missing.value.code == blank.value.code == unknown.value.code == -32602
    assert "'after'" in missing.value.message and "diff-screenshots" in missing.value.message
    assert "'screenshot'" in blank.value.message
    assert "'image'" in unknown.value.message and "'chart'" in unknown.value.message


@pytest.mark.parametrize("mode", MODES)
async def test_override_dir_replaces_one_prompt(settings, tmp_path, mode):
    overrides = tmp_path / "prompts"
    overrides.mkdir()
    (overrides / "explain-chart.md").write_text(
        "name: explain-chart\nkind: mcp\ntitle: Our chart review\ndescription: House style.\n"
        "argument: chart | The chart | required\n---\nUse `describe_image` on \"{chart}\"; answer in one line.\n"
    )
    server = build_server(dataclasses.replace(settings, prompts_dir=overrides))
    async with Client(server, mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        result = await client.get_prompt("explain-chart", {"chart": "c.png"})
        other = await client.get_prompt("review-ui-screenshot", {"screenshot": "s.png"})
    assert set(prompts) == set(MENU)
    assert prompts["explain-chart"].title == "Our chart review"
    assert [a.name for a in prompts["explain-chart"].arguments] == ["chart"]
    assert result.messages[0].content.text == 'Use `describe_image` on "c.png"; answer in one line.\n'
    assert "`describe_image`" in other.messages[0].content.text  # the others stay as shipped


def _schema_names(schema: object) -> set[str]:
    """Every property name anywhere in a JSON schema."""
    names: set[str] = set()
    if isinstance(schema, dict):
        names |= set(schema.get("properties", {}))
        for value in schema.values():
            names |= _schema_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _schema_names(value)
    return names


async def test_every_shipped_mcp_prompt_names_real_tools_arguments_and_fields(settings):
    """Placeholders are exactly the declared arguments; every `name` in backticks is a tool, one of its
    arguments or a field of its result, so a renamed argument cannot leave a prompt giving wrong advice."""
    async with Client(build_server(settings)) as client:
        tools = (await client.list_tools()).tools
    known = {t.name for t in tools}
    for tool in tools:
        known |= _schema_names(tool.input_schema) | _schema_names(tool.output_schema)
    prompts = PromptLibrary().mcp_prompts()
    assert len(prompts) >= 4
    for prompt in prompts:
        used = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}", prompt.text))
        assert used == {a.name for a in prompt.arguments}, prompt.name
        quoted = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.\[\]]*)`", prompt.text))
        quoted = {re.sub(r"\[\d+\]", "", q).split(".")[-1] for q in quoted}
        assert quoted & TOOLS, f"{prompt.name} names no tool"
        assert quoted <= known, f"{prompt.name} names {sorted(quoted - known)}, which no tool has"


def test_render_fills_in_one_pass_and_drops_lines_of_missing_optionals(tmp_path):
    f = tmp_path / "p.md"
    f.write_text(
        "name: p\nkind: mcp\nargument: a | A | required\nargument: b | B | optional\n---\n"
        "Look at {a}.\nAlso {b}.\nKeep {unknown} braces and {\"json\": 1}.\n"
    )
    prompt = parse_prompt(f)
    assert render(prompt, {"a": "x {b}"}) == 'Look at x {b}.\nKeep {unknown} braces and {"json": 1}.\n'
    assert render(prompt, {"a": "x", "b": "y"}) == 'Look at x.\nAlso y.\nKeep {unknown} braces and {"json": 1}.\n'
    assert render(prompt, {"a": "x", "b": ""}).count("Also") == 0


def test_prompts_list_and_get_stay_cheap(tmp_path):
    """prompts/list and prompts/get are answered from the files: no torch, no PIL, no PyMuPDF."""
    heavy = ("torch", "transformers", "bitsandbytes", "fitz", "pymupdf", "av", "PIL")
    code = textwrap.dedent(
        f"""
        import sys, anyio
        from mcp import Client
        from mcp_vision.server import build_server
        from mcp_vision.settings import Settings

        async def main():
            async with Client(build_server(Settings(model={str(tmp_path)!r}))) as client:
                assert len((await client.list_prompts()).prompts) >= 4
                await client.get_prompt("diff-screenshots", {{"before": "a.png", "after": "b.png"}})
        anyio.run(main)
        print(",".join(m for m in {heavy!r} if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported for prompts: {proc.stdout.strip()}"
