"""Prompt files: the shipped ones, the file format, override directories and argument headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_vision.model_prompts import PromptArgumentSpec, PromptLibrary, parse_prompt, shipped_prompts_dir
from mcp_vision.settings import Settings


def test_shipped_prompts_dir_exists():
    assert shipped_prompts_dir().is_dir()
    assert any(shipped_prompts_dir().glob("*.md"))


def test_every_shipped_prompt_parses():
    for path in shipped_prompts_dir().glob("*.md"):
        prompt = parse_prompt(path)
        assert prompt.text.strip(), path
        assert prompt.kind in {"task", "mcp"}


@pytest.mark.parametrize("name", ["describe", "ocr", "compare", "video"])
def test_shipped_task_prompts_exist_with_text(name):
    prompt = PromptLibrary().task(name)
    assert prompt.name == name
    assert prompt.kind == "task"
    assert len(prompt.text.strip()) > 20
    assert "---" not in prompt.text  # the header is not part of the text
    assert "kind:" not in prompt.text


def test_unknown_task_prompt_raises_key_error():
    with pytest.raises(KeyError, match="nope"):
        PromptLibrary().task("nope")


def test_header_and_text_are_split(tmp_path):
    f = tmp_path / "x.md"
    f.write_text("name: hello\nkind: mcp\ntitle: Hi\ndescription: Says hi\n---\n\nHello {who}!\n\n")
    p = parse_prompt(f)
    assert (p.name, p.kind, p.title, p.description) == ("hello", "mcp", "Hi", "Says hi")
    assert p.text == "Hello {who}!\n"
    assert p.render(who="you") == "Hello you!\n"


def test_name_defaults_to_file_stem_and_kind_to_task(tmp_path):
    f = tmp_path / "stemmy.md"
    f.write_text("description: d\n---\ntext\n")
    p = parse_prompt(f)
    assert (p.name, p.kind) == ("stemmy", "task")


def test_file_without_separator_raises(tmp_path):
    f = tmp_path / "bad.md"
    f.write_text("name: bad\nkind: task\nJust text, no separator.\n")
    with pytest.raises(ValueError, match="---"):
        parse_prompt(f)


def test_header_line_without_colon_raises(tmp_path):
    f = tmp_path / "bad.md"
    f.write_text("name: bad\nthis is not a header\n---\ntext\n")
    with pytest.raises(ValueError, match="key: value"):
        parse_prompt(f)


def test_unknown_kind_raises(tmp_path):
    f = tmp_path / "bad.md"
    f.write_text("kind: tool\n---\ntext\n")
    with pytest.raises(ValueError, match="kind"):
        parse_prompt(f)


def test_comments_and_blank_header_lines_are_skipped(tmp_path):
    f = tmp_path / "c.md"
    f.write_text("# a comment: with a colon\n\nname: c\n---\ntext\n")
    assert parse_prompt(f).name == "c"


def test_argument_header_lines_parse(tmp_path):
    f = tmp_path / "args.md"
    f.write_text(
        "name: args\n"
        "kind: mcp\n"
        "argument: image | Path or URL of the image | required\n"
        "argument: focus | What to look at | optional\n"
        "argument: bare\n"
        "---\n"
        "Look at {image}, focus on {focus}.\n"
    )
    p = parse_prompt(f)
    assert p.arguments == (
        PromptArgumentSpec("image", "Path or URL of the image", True),
        PromptArgumentSpec("focus", "What to look at", False),
        PromptArgumentSpec("bare", "", False),
    )


def test_override_dir_replaces_describe_by_name(tmp_path):
    shipped = PromptLibrary().task("describe").text
    (tmp_path / "describe.md").write_text("name: describe\nkind: task\n---\nSay only the main colour.\n")
    library = PromptLibrary(Settings(prompts_dir=tmp_path).prompts_dir)
    assert library.task("describe").text == "Say only the main colour.\n"
    assert library.task("describe").text != shipped
    assert library.task("ocr").text == PromptLibrary().task("ocr").text  # others untouched


def test_override_dir_adds_mcp_prompts(tmp_path):
    (tmp_path / "extra.md").write_text("name: extra\nkind: mcp\n---\nExtra prompt.\n")
    names = [p.name for p in PromptLibrary(tmp_path).mcp_prompts()]
    assert "extra" in names
    assert "extra" not in [p.name for p in PromptLibrary().mcp_prompts()]


def test_missing_override_dir_raises(tmp_path):
    with pytest.raises(ValueError, match="MCP_VISION_PROMPTS_DIR"):
        PromptLibrary(tmp_path / "does-not-exist")


def test_override_dir_that_is_a_file_raises(tmp_path):
    f = tmp_path / "file.md"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        PromptLibrary(Path(f))


def test_bad_file_in_override_dir_raises(tmp_path):
    (tmp_path / "broken.md").write_text("no separator here\n")
    with pytest.raises(ValueError, match="broken.md"):
        PromptLibrary(tmp_path)
