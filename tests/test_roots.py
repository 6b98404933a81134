"""Where files are read: directories the user configured are authoritative (client roots change nothing);
with nothing configured, the client's roots replace the default (the working directory, never `/` or the
home directory itself). On both protocol eras.

The end-to-end calls use ocr_document on born-digital PDFs (read from their text layer), so no model
is needed: what is checked is only whether the file boundary let the file through."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mcp import Client
from mcp_types import ListRootsResult, Root

from mcp_vision.errors import AccessError
from mcp_vision.inputs.sources import Boundary, load_media, narrow, roots_from_uris
from mcp_vision.server import build_server
from mcp_vision.settings import Settings

from . import hostile

MODES = ["auto", "legacy"]  # auto negotiates the stateless 2026-07-28 protocol; legacy the 2025-11-25 handshake
PDF = hostile.pdf(1)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """allowed/{project,other}/doc.pdf, outside/doc.pdf."""
    paths = {
        "allowed": tmp_path / "allowed",
        "project": tmp_path / "allowed" / "project",
        "other": tmp_path / "allowed" / "other",
        "outside": tmp_path / "outside",
    }
    for name in ("project", "other", "outside"):
        paths[name].mkdir(parents=True)
        (paths[name] / "doc.pdf").write_bytes(PDF)
    (paths["allowed"] / "doc.pdf").write_bytes(PDF)
    paths["root"] = tmp_path
    return paths


def _settings(tree: dict[str, Path], **overrides: object) -> Settings:
    return Settings(model=str(tree["root"] / "no-model"), allowed_dirs=(tree["allowed"],), **overrides)


def _offering(*dirs: Path | str):
    """A client's roots/list callback offering these roots (paths become file:// URIs)."""

    async def list_roots(_context):
        return ListRootsResult(
            roots=[Root(uri=d.as_uri() if isinstance(d, Path) else d, name="r") for d in dirs]
        )

    return list_roots


# ------------------------------------------------------------ the boundary itself


def test_roots_from_uris_keeps_local_absolute_directories_only():
    uris = ["file:///work/a", "file://localhost/work/b%20c", "https://example.com/x", "file://host/share", "file:rel"]
    assert roots_from_uris(uris) == (Path("/work/a"), Path("/work/b c"))
    assert roots_from_uris(["https://example.com/"]) is None
    assert roots_from_uris([]) is None


def test_narrow_keeps_only_what_both_allow():
    allowed = (Path("/data"), Path("/home/me/pics"))
    assert narrow(allowed, (Path("/data/project"),)) == (Path("/data/project"),)  # a root inside: narrowed
    assert narrow(allowed, (Path("/home/me"),)) == (Path("/home/me/pics"),)  # a root around: the allowed dir
    assert narrow(allowed, (Path("/etc"), Path("/"))) == allowed  # "/" contains both; /etc adds nothing
    assert narrow(allowed, (Path("/data_evil"),)) == ()  # whole components: not inside /data
    assert narrow(allowed, (Path("/data/a"), Path("/data/a"))) == (Path("/data/a"),)


def _unconfigured(tree: dict[str, Path], monkeypatch, cwd: Path | None = None, **overrides: object) -> Settings:
    """Nothing configured (MCP_VISION_ALLOWED_DIRS unset), started in `cwd` (default: allowed/)."""
    monkeypatch.chdir(cwd or tree["allowed"])
    return Settings(model=str(tree["root"] / "no-model"), **overrides)


def test_configured_directories_are_authoritative_roots_change_nothing(tree):
    settings = _settings(tree)
    roots = (tree["project"],)
    assert load_media(str(tree["project"] / "doc.pdf"), settings, roots).data == PDF
    assert load_media(str(tree["other"] / "doc.pdf"), settings, roots).data == PDF  # never narrowed
    with pytest.raises(AccessError, match="outside the allowed directories .*MCP_VISION_ALLOWED_DIRS"):
        load_media(str(tree["outside"] / "doc.pdf"), settings, (tree["outside"],))  # never widened
    with pytest.raises(AccessError):
        load_media("/etc/passwd", settings, (Path("/"),))


def test_with_nothing_configured_the_roots_replace_the_working_directory(tree, monkeypatch):
    settings = _unconfigured(tree, monkeypatch)
    assert load_media(str(tree["other"] / "doc.pdf"), settings).data == PDF  # no roots: the working directory
    roots = (tree["outside"],)
    assert load_media(str(tree["outside"] / "doc.pdf"), settings, roots).data == PDF
    with pytest.raises(AccessError, match="outside the client's roots .*MCP_VISION_ALLOWED_DIRS") as refused:
        load_media(str(tree["other"] / "doc.pdf"), settings, roots)
    assert str(tree["outside"]) in str(refused.value) and len(str(refused.value)) < 400


@pytest.mark.parametrize("where", ["/", "home"])
def test_started_in_the_root_or_home_directory_nothing_is_read_by_default(tree, monkeypatch, where):
    monkeypatch.setenv("HOME", str(tree["root"]))
    cwd = Path("/") if where == "/" else tree["root"]
    settings = _unconfigured(tree, monkeypatch, cwd=cwd)
    assert settings.default_dirs() == ()
    with pytest.raises(AccessError, match="MCP_VISION_ALLOWED_DIRS is unset .* set MCP_VISION_ALLOWED_DIRS") as refused:
        load_media(str(tree["other"] / "doc.pdf"), settings)
    message = str(refused.value)
    assert "\n" not in message and len(message) - len(str(tree["other"] / "doc.pdf")) - len(str(cwd)) < 250
    # The client's roots still say where to read.
    assert load_media(str(tree["project"] / "doc.pdf"), settings, (tree["project"],)).data == PDF


def test_beyond_loopback_roots_only_narrow_the_default(tree, monkeypatch):
    settings = _unconfigured(tree, monkeypatch, roots_replace_default=False)
    roots = (tree["project"],)
    assert load_media(str(tree["project"] / "doc.pdf"), settings, roots).data == PDF
    with pytest.raises(AccessError, match="narrowed to the client's roots"):
        load_media(str(tree["other"] / "doc.pdf"), settings, roots)
    with pytest.raises(AccessError):
        load_media(str(tree["outside"] / "doc.pdf"), settings, (tree["outside"],))  # never widened


def test_a_symlinked_root_is_compared_resolved(tree, monkeypatch):
    link = tree["allowed"] / "link-to-project"
    link.symlink_to(tree["project"], target_is_directory=True)
    settings = _unconfigured(tree, monkeypatch)
    assert load_media(str(link / "doc.pdf"), settings, (link,)).data == PDF
    assert load_media(str(tree["project"] / "doc.pdf"), settings, (link,)).data == PDF
    with pytest.raises(AccessError):
        load_media(str(tree["other"] / "doc.pdf"), settings, (link,))


def test_a_root_symlinked_out_of_the_working_directory_opens_nothing_beyond_loopback(tree, monkeypatch):
    door = tree["allowed"] / "door"
    door.symlink_to(tree["outside"], target_is_directory=True)
    settings = _unconfigured(tree, monkeypatch, roots_replace_default=False)
    assert Boundary.of(settings, (door,)).real == ()
    with pytest.raises(AccessError):
        load_media(str(door / "doc.pdf"), settings, (door,))


# ------------------------------------------------------------ through a real MCP client


async def _ocr(client: Client, path: Path):
    return await client.call_tool("ocr_document", {"document": str(path)})


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_client_offering_its_working_directory_still_reads_the_configured_directories(tree, mode):
    """Claude Code offers only its working directory as a root; ~/Pictures listed by the user stays readable."""
    settings = _settings(tree).with_overrides(allowed_dirs=(tree["other"], tree["project"]))
    async with Client(build_server(settings), mode=mode, list_roots_callback=_offering(tree["project"])) as client:
        for folder in ("project", "other"):
            result = await _ocr(client, tree[folder] / "doc.pdf")
            assert not result.is_error, result.content[0].text
        refused = await _ocr(client, tree["outside"] / "doc.pdf")
        assert refused.is_error and "MCP_VISION_ALLOWED_DIRS" in refused.content[0].text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_with_nothing_configured_client_roots_say_where_every_file_tool_reads(tree, mode, monkeypatch):
    server = build_server(_unconfigured(tree, monkeypatch))
    async with Client(server, mode=mode, list_roots_callback=_offering(tree["outside"])) as client:
        inside = await _ocr(client, tree["outside"] / "doc.pdf")
        assert not inside.is_error, inside.content[0].text
        assert "Page 1 says hello" in inside.structured_content["pages"][0]["text"]
        for tool, args in hostile.media_tool_calls(str(tree["other"] / "doc.pdf")):
            result = await client.call_tool(tool, args)
            assert result.is_error, tool
            assert "outside the client's roots" in result.content[0].text, (tool, result.content[0].text)


@pytest.mark.anyio
async def test_roots_cannot_be_passed_as_a_tool_argument(tree, monkeypatch):
    server = build_server(_unconfigured(tree, monkeypatch))
    async with Client(server, list_roots_callback=_offering(tree["project"])) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert all("roots" not in t.input_schema["properties"] for t in tools.values())
        widened = {"roots": [{"uri": tree["outside"].as_uri()}]}
        result = await client.call_tool("ocr_document", {"document": str(tree["outside"] / "doc.pdf"), **widened})
        assert result.is_error


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_only_calls_that_read_files_ask_for_roots_and_only_when_they_matter(tree, mode, monkeypatch):
    asked = []

    async def list_roots(context):
        asked.append(1)
        return ListRootsResult(roots=[Root(uri=tree["project"].as_uri(), name="project")])

    data_uri = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    async with Client(build_server(_settings(tree)), mode=mode, list_roots_callback=list_roots) as client:
        assert not (await _ocr(client, tree["other"] / "doc.pdf")).is_error
        assert asked == []  # configured directories: roots change nothing, so they are never asked for
    async with Client(build_server(_unconfigured(tree, monkeypatch)), mode=mode, list_roots_callback=list_roots) as client:
        result = await client.call_tool("ocr_document", {"document": data_uri})
        assert not result.is_error, result.content[0].text
        assert asked == []  # a data: URI reads no file: no roots/list round trip
        assert not (await _ocr(client, tree["project"] / "doc.pdf")).is_error
        assert asked == [1]
