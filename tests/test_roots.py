"""The client's roots narrow the allowed directories and never widen them, on both protocol eras.

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


def test_a_file_outside_the_roots_is_refused_inside_them_read(tree):
    settings = _settings(tree)
    roots = (tree["project"],)
    assert load_media(str(tree["project"] / "doc.pdf"), settings, roots).data == PDF
    with pytest.raises(AccessError, match="narrowed to the client's roots") as refused:
        load_media(str(tree["other"] / "doc.pdf"), settings, roots)
    assert str(tree["project"]) in str(refused.value)


def test_roots_never_widen(tree):
    settings = _settings(tree)
    with pytest.raises(AccessError, match="none of the client's roots"):
        load_media(str(tree["outside"] / "doc.pdf"), settings, (tree["outside"],))
    with pytest.raises(AccessError):
        load_media("/etc/passwd", settings, (Path("/"),))


def test_a_symlinked_root_is_compared_resolved(tree):
    link = tree["allowed"] / "link-to-project"
    link.symlink_to(tree["project"], target_is_directory=True)
    settings = _settings(tree)
    assert load_media(str(link / "doc.pdf"), settings, (link,)).data == PDF
    assert load_media(str(tree["project"] / "doc.pdf"), settings, (link,)).data == PDF
    with pytest.raises(AccessError):
        load_media(str(tree["other"] / "doc.pdf"), settings, (link,))


def test_a_root_symlinked_out_of_the_allowed_directories_opens_nothing(tree):
    door = tree["allowed"] / "door"
    door.symlink_to(tree["outside"], target_is_directory=True)
    boundary = Boundary.of(_settings(tree), (door,))
    assert boundary.real == ()
    with pytest.raises(AccessError):
        load_media(str(door / "doc.pdf"), _settings(tree), (door,))


# ------------------------------------------------------------ through a real MCP client


async def _ocr(client: Client, path: Path):
    return await client.call_tool("ocr_document", {"document": str(path)})


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_client_roots_narrow_every_file_tool(tree, mode):
    server = build_server(_settings(tree))
    async with Client(server, mode=mode, list_roots_callback=_offering(tree["project"])) as client:
        inside = await _ocr(client, tree["project"] / "doc.pdf")
        assert not inside.is_error, inside.content[0].text
        assert "Page 1 says hello" in inside.structured_content["pages"][0]["text"]
        for tool, args in hostile.media_tool_calls(str(tree["other"] / "doc.pdf")):
            result = await client.call_tool(tool, args)
            assert result.is_error, tool
            assert "narrowed to the client's roots" in result.content[0].text, (tool, result.content[0].text)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_client_roots_outside_the_allowed_directories_open_nothing(tree, mode):
    server = build_server(_settings(tree))
    async with Client(server, mode=mode, list_roots_callback=_offering(tree["outside"], "file:///")) as client:
        # "/" contains the allowed directory, so it stays readable; outside/ is never added.
        assert not (await _ocr(client, tree["other"] / "doc.pdf")).is_error
        refused = await _ocr(client, tree["outside"] / "doc.pdf")
        assert refused.is_error and "outside the directories this client may read" in refused.content[0].text
        assert (await client.call_tool("ocr_document", {"document": "/etc/passwd"})).is_error
    async with Client(server, mode=mode, list_roots_callback=_offering(tree["outside"])) as client:
        refused = await _ocr(client, tree["allowed"] / "doc.pdf")
        assert refused.is_error and "none of the client's roots" in refused.content[0].text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_without_roots_the_allowed_directories_hold(tree, mode):
    # A client that does not declare roots, one that offers none, one offering only a remote share,
    # and a server told to ignore roots: the allowed directories are used as configured.
    cases = [
        (_settings(tree), None),
        (_settings(tree), _offering()),
        (_settings(tree), _offering("file://fileserver/share")),  # a remote host: not a local directory
        (_settings(tree, client_roots=False), _offering(tree["outside"])),
    ]
    for settings, callback in cases:
        async with Client(build_server(settings), mode=mode, list_roots_callback=callback) as client:
            assert not (await _ocr(client, tree["other"] / "doc.pdf")).is_error
            assert (await _ocr(client, tree["outside"] / "doc.pdf")).is_error


@pytest.mark.anyio
async def test_roots_cannot_be_passed_as_a_tool_argument(tree):
    async with Client(build_server(_settings(tree)), list_roots_callback=_offering(tree["project"])) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert all("roots" not in t.input_schema["properties"] for t in tools.values())
        widened = {"roots": [{"uri": tree["outside"].as_uri()}]}
        result = await client.call_tool("ocr_document", {"document": str(tree["outside"] / "doc.pdf"), **widened})
        assert result.is_error


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_only_calls_that_read_files_ask_for_roots(tree, mode):
    asked = []

    async def list_roots(context):
        asked.append(1)
        return ListRootsResult(roots=[Root(uri=tree["project"].as_uri(), name="project")])

    data_uri = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    async with Client(build_server(_settings(tree)), mode=mode, list_roots_callback=list_roots) as client:
        result = await client.call_tool("ocr_document", {"document": data_uri})
        assert not result.is_error, result.content[0].text
        assert asked == []  # a data: URI reads no file: no roots/list round trip
        assert not (await _ocr(client, tree["project"] / "doc.pdf")).is_error
        assert asked == [1]
