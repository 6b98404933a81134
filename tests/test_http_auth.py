"""A server a team shares, over real streamable HTTP on loopback: bearer tokens from a file and JWTs from an
authorization server (its JWKS served on loopback) both work through the SDK's own client; no token, a wrong one
and every kind of bad JWT get 401 with WWW-Authenticate naming the RFC 9728 metadata; each principal's sessions and
previews are invisible to the others, exactly as unknown ones; remote callers read no server-side file; health,
readiness and metrics."""

from __future__ import annotations

import base64
import http.client
import json
import re

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import ProtectedResourceMetadata

from mcp_vision import cli

from . import hostile, servers
from .servers import server_env
from .support.issuer import issuer_on_loopback
from .support.remote import MODEL, FakeEngine

pytestmark = pytest.mark.anyio

ALICE = "alice-" + "a" * 40
BOB = "bob-" + "b" * 40
PNG_URI = "data:image/png;base64," + base64.b64encode(hostile.png()).decode()


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The real command on a loopback port with a tokens file and an issuer, in front of the stub engine."""
    root = tmp_path_factory.mktemp("team")
    media = root / "media"
    media.mkdir()
    (media / "x.png").write_bytes(hostile.png())
    tokens = root / "tokens"
    tokens.write_text(f"# the team\nalice:{ALICE}\nbob:{BOB}\n")
    tokens.chmod(0o600)
    engine = FakeEngine()
    port = servers.free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    with issuer_on_loopback() as issuer:
        env = server_env(
            root / "no-model", media, MCP_VISION_BACKEND="openai", MCP_VISION_BASE_URL=engine.url,
            MCP_VISION_REMOTE_MODEL=MODEL, MCP_VISION_AUTH_TOKENS_FILE=str(tokens), MCP_VISION_AUTH_ISSUER=issuer.url,
        )
        log = root / "server.log"
        with servers.http_server(env, media, log, port=port) as (port, _proc):
            yield {"port": port, "resource": resource, "issuer": issuer, "engine": engine, "media": media, "log": log}
    engine.close()


def _client(team, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
    return Client(streamable_http_client(team["resource"], http_client=http))


def _post(port: int, token: str | None, path: str = "/mcp", method: str = "POST"):
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = token if token.startswith(("Bearer ", "Basic ")) else f"Bearer {token}"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def test_no_token_and_wrong_tokens_get_401_naming_the_metadata(team):
    port, resource, issuer = team["port"], team["resource"], team["issuer"]
    metadata = f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
    bad = {
        "none": None,
        "not a token": "nonsense",
        "basic": "Basic " + base64.b64encode(b"alice:x").decode(),
        "a file token's prefix": ALICE[:-1],
        "expired": issuer.token(resource, lifetime=-120),
        "not yet valid": issuer.token(resource, not_before=600),
        "wrong audience": issuer.token("http://127.0.0.1:1/mcp"),
        "wrong issuer": issuer.token(resource, issuer="https://other.example"),
        "bad signature": issuer.token(resource, kid="k1", sign_with="k2"),
        "unknown key": issuer.token(resource, kid="k3"),
        "unsigned": _unsigned(issuer.url, resource),
    }
    for what, token in bad.items():
        status, headers, body = _post(port, token)
        assert status == 401, (what, status, body)
        challenge = headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata}"' in challenge, (what, challenge)
        assert json.loads(body)["error"] == "invalid_token"
    log = team["log"].read_text()
    for token in (ALICE, BOB, *[t for t in bad.values() if t and len(t) > 20]):
        assert token not in log  # no token is ever logged


def _unsigned(iss: str, aud: str) -> str:
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{encode({'alg': 'none', 'kid': 'k1'})}.{encode({'iss': iss, 'aud': aud, 'sub': 'x', 'exp': 4102444800})}."


def test_the_metadata_has_rfc_9728_fields_at_both_paths(team):
    port, resource, issuer = team["port"], team["resource"], team["issuer"]
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        status, _, body = _post(port, None, path, method="GET")
        assert status == 200, path
        document = json.loads(body)
        ProtectedResourceMetadata.model_validate(document)  # the SDK's RFC 9728 model
        assert document["resource"] == resource
        assert document["authorization_servers"] == [issuer.url]
        assert document["bearer_methods_supported"] == ["header"]


async def test_a_file_token_and_a_valid_jwt_both_work_through_the_sdk_client(team):
    jwt_token = team["issuer"].token(team["resource"], subject="carol")
    for token in (ALICE, jwt_token):
        async with _client(team, token) as client:
            tools = await client.list_tools()
            described = await client.call_tool("describe_image", {"image": PNG_URI, "max_new_tokens": 4})
        assert len(tools.tools) == 6
        assert not described.is_error, described.content[0].text
        assert described.structured_content["answer"] == "Hello from the engine."


async def test_the_sdk_client_without_a_token_is_refused(team):
    seen: list[tuple[int, str]] = []

    async def record(response) -> None:
        seen.append((response.status_code, response.headers.get("www-authenticate", "")))

    http = httpx2.AsyncClient(event_hooks={"response": [record]})
    with pytest.raises(Exception):  # the client gives up: the server never let it initialize
        with anyio.fail_after(60):
            async with Client(streamable_http_client(team["resource"], http_client=http)) as client:
                await client.list_tools()
    assert seen and all(status == 401 and "resource_metadata=" in challenge for status, challenge in seen), seen


async def test_sessions_and_previews_are_their_principals_own(team):
    async with _client(team, ALICE) as alice, _client(team, BOB) as bob:
        made = await alice.call_tool("describe_image", {"image": PNG_URI, "max_new_tokens": 4})
        assert not made.is_error, made.content[0].text
        session = made.structured_content["session_id"]
        preview = _preview_uri(made)
        # Alice continues and reads her preview.
        again = await alice.call_tool("follow_up", {"session_id": session, "question": "and?"})
        assert not again.is_error, again.content[0].text
        assert (await alice.read_resource(preview)).contents[0].blob
        # Bob gets exactly what an unknown id gets.
        made_up = "vs_" + "A" * 32
        foreign = await bob.call_tool("follow_up", {"session_id": session, "question": "what did alice see?"})
        unknown = await bob.call_tool("follow_up", {"session_id": made_up, "question": "what did alice see?"})
        assert foreign.is_error and unknown.is_error
        assert foreign.content[0].text.replace(session, "ID") == unknown.content[0].text.replace(made_up, "ID")
        continued = await bob.call_tool("describe_image", {"image": PNG_URI, "session_id": session})
        assert continued.is_error and "Unknown or expired session_id" in continued.content[0].text
        foreign_preview, unknown_preview = [], []
        for uri, into in ((preview, foreign_preview), (preview.replace(session, made_up), unknown_preview)):
            try:
                await bob.read_resource(uri)
            except Exception as exc:  # the SDK client raises the server's error
                into.append(str(exc).replace(session, "ID").replace(made_up, "ID"))
        assert foreign_preview and foreign_preview == unknown_preview, (foreign_preview, unknown_preview)
        # Alice's session is untouched by Bob's attempts.
        still = await alice.call_tool("follow_up", {"session_id": session, "question": "still there?"})
        assert not still.is_error


def _preview_uri(result) -> str:
    from mcp_vision import viewer

    return result.meta[viewer.META_KEY]["images"][0]["uri"]


async def test_remote_callers_send_media_not_server_paths(team):
    async with _client(team, ALICE) as alice:
        for source in (str(team["media"] / "x.png"), "x.png", (team["media"] / "x.png").as_uri()):
            refused = await alice.call_tool("describe_image", {"image": source})
            assert refused.is_error
            text = refused.content[0].text
            assert "callers over the network may not read" in text and "data: URI" in text, text
            if source == "x.png":  # resolved against the server's working directory, which is not told
                assert str(team["media"]) not in text, text


def test_health_readiness_and_metrics(team):
    port = team["port"]
    status, _, body = _post(port, None, "/healthz", method="GET")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, _ = _post(port, None, "/metrics", method="GET")
    assert status == 401 and "resource_metadata=" in headers["www-authenticate"]
    anyio.run(_one_call, team)
    status, _, body = _post(port, None, "/readyz", method="GET")
    assert status == 200 and json.loads(body) | {"ready": True, "engine": "remote"} == json.loads(body)
    status, headers, text = _post(port, ALICE, "/metrics", method="GET")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    ok = re.search(r'^mcp_vision_tool_calls_total\{outcome="ok",tool="describe_image"\} (\d+)', text, re.M)
    assert ok and int(float(ok.group(1))) >= 1, text
    for name in ("mcp_vision_tool_call_seconds_bucket", "mcp_vision_queue_wait_seconds_count",
                 "mcp_vision_generated_tokens_total", "mcp_vision_queue_depth", "mcp_vision_model_load_seconds",
                 'mcp_vision_engine_info{engine="remote"'):
        assert name in text, name
    tokens = re.search(r"^mcp_vision_generated_tokens_total (\S+)", text, re.M)
    assert tokens and float(tokens.group(1)) >= 4  # the engine reports 4 completion tokens a call


async def _one_call(team) -> None:
    async with _client(team, BOB) as bob:
        assert not (await bob.call_tool("describe_image", {"image": PNG_URI, "max_new_tokens": 4})).is_error


# ------------------------------------------------------------------------------------ starting the server


def test_serving_beyond_loopback_without_auth_refuses_in_one_sentence(monkeypatch, capsys):
    for var in ("MCP_VISION_AUTH_TOKENS_FILE", "MCP_VISION_AUTH_ISSUER"):
        monkeypatch.delenv(var, raising=False)
    assert cli.run(["--transport", "streamable-http", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count(". ") == 0, err
    assert "refusing to serve on 0.0.0.0 without authentication" in err
    for option in ("MCP_VISION_AUTH_TOKENS_FILE", "MCP_VISION_AUTH_ISSUER", "--insecure-no-auth"):
        assert option in err


def test_a_tokens_file_open_to_others_or_malformed_is_refused(tmp_path, monkeypatch, capsys):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    tokens.chmod(0o644)
    monkeypatch.setenv("MCP_VISION_AUTH_TOKENS_FILE", str(tokens))
    assert cli.run(["--transport", "streamable-http", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "open to other users" in err and f"chmod 600 {tokens}" in err and ALICE not in err
    tokens.chmod(0o600)
    for text, expected in ((f"alice {ALICE}\n", "is not `name:token`"), ("alice:short\n", "shorter than 16"),
                           (f"alice:{ALICE}\nbob:{ALICE}\n", "another name's token"), ("# nobody\n", "holds no")):
        tokens.write_text(text)
        assert cli.run(["--transport", "streamable-http", "--host", "0.0.0.0"]) == 2
        err = capsys.readouterr().err
        assert expected in err and ALICE not in err, err


def test_an_issuer_beyond_loopback_needs_the_resource_url(monkeypatch, capsys):
    monkeypatch.delenv("MCP_VISION_AUTH_TOKENS_FILE", raising=False)
    monkeypatch.setenv("MCP_VISION_AUTH_ISSUER", "https://auth.example.com")
    assert cli.run(["--transport", "streamable-http", "--host", "0.0.0.0"]) == 2
    assert "MCP_VISION_RESOURCE_URL" in capsys.readouterr().err
