"""CORS on streamable HTTP, over real HTTP on loopback: off unless origins are listed (a cross-origin preflight
is refused as before); with `MCP_VISION_CORS_ORIGINS` / `--cors-origin`, pages from exactly those origins may
call the server (preflight answered, the protocol's headers allowed and exposed), DNS-rebinding protection kept."""

from __future__ import annotations

import http.client
import json

import pytest

from mcp_vision.cli import build_parser, settings_from

from . import servers
from .servers import server_env

ALLOWED = "https://apps.example"
LOCAL_PAGE = "http://localhost:5173"
PROTOCOL_HEADERS = ("content-type", "authorization", "mcp-session-id", "mcp-protocol-version", "last-event-id")
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "page", "version": "0"}},
}


def _request(port: int, method: str, headers: dict[str, str], body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, "/mcp", body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode(errors="replace")
    finally:
        conn.close()


def _preflight(port: int, origin: str):
    return _request(port, "OPTIONS", {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": ", ".join(PROTOCOL_HEADERS),
    })


def _post(port: int, origin: str, message: dict, **extra: str):
    headers = {"Origin": origin, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               **extra}
    status, got, body = _request(port, "POST", headers, message)
    data = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
    return status, got, (data[0] if data else body)


def _listed(headers: dict[str, str], name: str) -> set[str]:
    return {h.strip().lower() for h in headers.get(name, "").split(",") if h.strip()}


@pytest.fixture
def cors_server(tmp_path, media_dir):
    env = server_env(tmp_path / "no-model", media_dir, MCP_VISION_CORS_ORIGINS=f"{ALLOWED}, {LOCAL_PAGE}")
    with servers.http_server(env, media_dir, tmp_path / "server.log") as (port, _proc):
        yield port


def test_a_listed_origin_gets_a_preflight_and_can_initialize_and_list_tools(cors_server):
    port = cors_server
    for origin in (ALLOWED, LOCAL_PAGE):
        status, headers, _ = _preflight(port, origin)
        assert status == 200, (origin, status)
        assert headers["access-control-allow-origin"] == origin
        assert {"get", "post", "delete"} <= _listed(headers, "access-control-allow-methods")
        assert set(PROTOCOL_HEADERS) <= _listed(headers, "access-control-allow-headers")
        assert "access-control-allow-credentials" not in headers
    # The page's own calls, from a non-loopback origin: DNS-rebinding protection lets the listed origin through.
    status, headers, answer = _post(port, ALLOWED, INITIALIZE)
    assert status == 200 and answer["result"]["serverInfo"]["name"] == "mcp-vision"
    assert headers["access-control-allow-origin"] == ALLOWED
    assert {"mcp-session-id", "mcp-protocol-version"} <= _listed(headers, "access-control-expose-headers")
    session = headers["mcp-session-id"]
    common = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    status, _, _ = _post(port, ALLOWED, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **common)
    assert status == 202
    status, headers, listed = _post(port, ALLOWED, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, **common)
    assert status == 200 and headers["access-control-allow-origin"] == ALLOWED
    assert "describe_image" in {tool["name"] for tool in listed["result"]["tools"]}


def test_an_unlisted_origin_is_refused(cors_server):
    port = cors_server
    for origin in ("https://evil.example", "http://localhost:9999", "https://apps.example.evil.example"):
        status, headers, _ = _preflight(port, origin)
        assert status >= 400 and "access-control-allow-origin" not in headers, origin
    status, headers, body = _post(port, "https://evil.example", INITIALIZE)
    assert status == 403 and "access-control-allow-origin" not in headers, body  # DNS-rebinding protection


def test_without_the_setting_a_cross_origin_preflight_is_refused_as_before(tmp_path, media_dir):
    env = server_env(tmp_path / "no-model", media_dir)
    with servers.http_server(env, media_dir, tmp_path / "server.log") as (port, _proc):
        for origin in (LOCAL_PAGE, ALLOWED):
            status, headers, _ = _preflight(port, origin)
            # 405 (no OPTIONS) for a loopback page, 403 (DNS-rebinding protection) for any other
            assert status in (403, 405) and not any(h.startswith("access-control-") for h in headers), origin
        status, headers, _ = _post(port, LOCAL_PAGE, INITIALIZE)
        assert status == 200 and "access-control-allow-origin" not in headers  # the page cannot read it


def test_origins_come_from_the_variable_or_the_repeatable_flag(monkeypatch):
    parser = build_parser()
    monkeypatch.setenv("MCP_VISION_CORS_ORIGINS", "https://a.example  http://localhost:8080/")
    assert settings_from(parser.parse_args([])).cors_origins == ("https://a.example", "http://localhost:8080")
    args = parser.parse_args(["--cors-origin", "https://b.example", "--cors-origin", "https://c.example:8443"])
    assert settings_from(args).cors_origins == ("https://b.example", "https://c.example:8443")
    monkeypatch.delenv("MCP_VISION_CORS_ORIGINS")
    assert settings_from(parser.parse_args([])).cors_origins == ()
    for bad in ("*", "apps.example", "https://apps.example/mcp", "ftp://apps.example", "https://u@apps.example"):
        with pytest.raises(ValueError, match="--cors-origin=.*not a web origin"):
            settings_from(parser.parse_args(["--cors-origin", bad]))


# A browser page on another loopback origin, as a web host is: Chromium itself runs the preflight and enforces
# what the answers allow (skipped without Chromium, failed in CI where .ci/run installs it).
PAGE_CALLS = """(async () => {
  const base = { "Content-Type": "application/json", "Accept": "application/json, text/event-stream" };
  const post = (body, headers) => fetch(window.SERVER, { method: "POST", headers: { ...base, ...headers }, body: JSON.stringify(body) });
  const read = async (response) => JSON.parse((await response.text()).split("\\n").find((l) => l.startsWith("data:")).slice(5));
  try {
    const init = await post(%s, { "MCP-Protocol-Version": "2025-11-25" });
    const session = init.headers.get("Mcp-Session-Id");
    const server = (await read(init)).result.serverInfo.name;
    const common = { "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25" };
    await post({ jsonrpc: "2.0", method: "notifications/initialized" }, common);
    const listed = await read(await post({ jsonrpc: "2.0", id: 2, method: "tools/list" }, common));
    return { server, session: !!session, tools: listed.result.tools.map((t) => t.name) };
  } catch (err) {
    return { error: String(err) };
  }
})()""" % json.dumps(INITIALIZE)


@pytest.fixture(scope="module")
def chromium():
    import os

    from .browser import Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium); .ci/run installs it")
    launched = Browser(executable, loopback=True)
    yield launched
    launched.close()


def _page_server():
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            body = b"<!doctype html><title>a web host</title><p>host</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return servers.loopback_http(Handler)


@pytest.mark.parametrize("allowed", [True, False])
def test_a_browser_page_on_another_origin_calls_the_server_only_when_allowed(chromium, tmp_path, media_dir, allowed):
    with _page_server() as page_url:
        extra = {"MCP_VISION_CORS_ORIGINS": page_url} if allowed else {}
        env = server_env(tmp_path / "no-model", media_dir, **extra)
        with servers.http_server(env, media_dir, tmp_path / "server.log") as (port, _proc):
            page = chromium.new_page()
            page.navigate(page_url + "/")
            assert page.evaluate("location.origin + ' ' + document.title") == page_url + " a web host"
            page.evaluate(f"window.SERVER = 'http://127.0.0.1:{port}/mcp'")
            got = page.evaluate(PAGE_CALLS, timeout=60)
    if allowed:
        assert got == {"server": "mcp-vision", "session": True, "tools": got.get("tools")}, got
        assert "describe_image" in got["tools"] and "follow_up" in got["tools"]
    else:
        assert got.get("error", "").startswith("TypeError"), got  # the browser refused: CORS, as before
        assert '"OPTIONS /mcp HTTP/1.1" 405' in (tmp_path / "server.log").read_text()  # its preflight, unanswered
    leaving = [u for u in page.requests if not u.startswith(("http://127.0.0.1:", "about:", "data:"))]
    assert leaving == [], leaving
