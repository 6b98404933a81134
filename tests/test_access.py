"""Bearer tokens, without a server: named file tokens (constant-time, never echoed) and JWTs against a JWKS served
on loopback (signature, iss, aud, exp, nbf; keys fetched again when a token names a new one, and not in a storm);
and the file-tokens-only protected-resource metadata, over the app in-process."""

from __future__ import annotations

import json

import httpx2
import pytest

from mcp_vision import access
from mcp_vision.access import JwtTokens, StaticTokens, Tokens, build_access, principal
from mcp_vision.settings import Settings

from .support.issuer import issuer_on_loopback

pytestmark = pytest.mark.anyio

AUDIENCE = "https://vision.example.com/mcp"
ALICE = "alice-" + "x" * 30


async def test_file_tokens_name_their_principal():
    tokens = StaticTokens([("alice", ALICE), ("bob", "bob-" + "y" * 30)], scopes=("vision",))
    found = await tokens.verify_token(ALICE)
    assert found is not None and found.client_id == found.subject == "alice" and found.scopes == ["vision"]
    for wrong in ("", ALICE[:-1], ALICE + "x", ALICE.upper()):
        assert await tokens.verify_token(wrong) is None
    other = await tokens.verify_token("bob-" + "y" * 30)
    assert principal(found) != principal(other) and principal(None) is None


async def test_jwts_are_checked_against_the_issuers_keys(monkeypatch):
    monkeypatch.setattr(access, "JWKS_MIN_REFETCH", 0.0)
    with issuer_on_loopback() as issuer:
        jwts = JwtTokens(issuer.url, AUDIENCE)
        good = await jwts.verify_token(issuer.token(AUDIENCE, subject="carol"))
        assert good is not None and good.subject == "carol" and good.client_id == "agent-app"
        assert good.resource == AUDIENCE and good.scopes == ["vision"]
        for bad in (
            issuer.token(AUDIENCE, lifetime=-120),  # expired (past the 30 s leeway)
            issuer.token(AUDIENCE, not_before=600),  # not yet valid
            issuer.token("https://other.example/mcp"),  # another resource's
            issuer.token(AUDIENCE, issuer=issuer.url + "/other"),  # another issuer's
            issuer.token(AUDIENCE, kid="k1", sign_with="k2"),  # signed by a key not the one named
            issuer.token(AUDIENCE, kid="k3"),  # a key the issuer does not publish
            "not.a.jwt",
        ):
            assert await jwts.verify_token(bad) is None
        # The issuer rotates in k2: a token naming it fetches the keys again and passes.
        issuer.published = ["k1", "k2"]
        fetched = issuer.jwks_fetches
        assert await jwts.verify_token(issuer.token(AUDIENCE, kid="k2")) is not None
        assert issuer.jwks_fetches == fetched + 1
        # Known keys are cached: no fetch for a token signed with one.
        assert await jwts.verify_token(issuer.token(AUDIENCE, kid="k1")) is not None
        assert issuer.jwks_fetches == fetched + 1


async def test_unknown_keys_do_not_fetch_the_keys_in_a_storm():
    with issuer_on_loopback() as issuer:
        jwts = JwtTokens(issuer.url, AUDIENCE)
        assert await jwts.verify_token(issuer.token(AUDIENCE)) is not None
        fetched = issuer.jwks_fetches
        for _ in range(5):
            assert await jwts.verify_token(issuer.token(AUDIENCE, kid="k3")) is None
        assert issuer.jwks_fetches == fetched  # within JWKS_MIN_REFETCH of the last fetch: none


async def test_either_kind_of_token_works_when_both_are_configured(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    tokens.chmod(0o600)
    with issuer_on_loopback() as issuer:
        configured = build_access(Settings(auth_tokens_file=tokens, auth_issuer=issuer.url), AUDIENCE)
        assert isinstance(configured.verifier, Tokens) and configured.named_tokens == 1
        assert (await configured.verifier.verify_token(ALICE)).subject == "alice"
        assert (await configured.verifier.verify_token(issuer.token(AUDIENCE, subject="dan"))).subject == "dan"
        assert await configured.verifier.verify_token("nope") is None
    assert build_access(Settings(), AUDIENCE) is None


async def test_file_tokens_alone_publish_metadata_without_an_authorization_server(tmp_path):
    from mcp_vision.serving import http_app
    from mcp_vision.server import build_server

    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    tokens.chmod(0o600)
    settings = Settings(model=str(tmp_path / "no-model"), auth_tokens_file=tokens)
    app = http_app(build_server(settings), "127.0.0.1", access=build_access(settings, AUDIENCE))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            document = (await client.get(path)).json()
            assert document == {"resource": AUDIENCE, "bearer_methods_supported": ["header"],
                                "resource_name": "mcp-vision"}
        refused = await client.post("/mcp", json={})
        assert refused.status_code == 401
        expected = 'resource_metadata="https://vision.example.com/.well-known/oauth-protected-resource/mcp"'
        assert expected in refused.headers["www-authenticate"]
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "not loaded" in json.loads(ready.text)["reason"]
        assert (await client.get("/metrics")).status_code == 401
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {ALICE}"})
        assert scraped.status_code == 200 and "mcp_vision_queue_depth 0.0" in scraped.text


async def test_without_authentication_or_with_public_metrics_metrics_need_no_token(tmp_path):
    from mcp_vision.serving import http_app
    from mcp_vision.server import build_server

    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    tokens.chmod(0o600)
    settings = Settings(model=str(tmp_path / "no-model"), auth_tokens_file=tokens)
    for access_, public in ((None, False), (build_access(settings, AUDIENCE), True)):
        app = http_app(build_server(settings), "127.0.0.1", access=access_, public_metrics=public)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200 and "mcp_vision_queue_depth" in scraped.text
            assert (await client.get("/.well-known/oauth-protected-resource")).status_code == (
                404 if access_ is None else 200)


async def test_a_token_without_a_required_scope_gets_403(tmp_path):
    from mcp_vision.serving import http_app
    from mcp_vision.server import build_server

    with issuer_on_loopback() as issuer:
        settings = Settings(model=str(tmp_path / "no-model"), auth_issuer=issuer.url, auth_scopes=("admin",))
        app = http_app(build_server(settings), "127.0.0.1", access=build_access(settings, AUDIENCE))
        transport = httpx2.ASGITransport(app=app)
        async with app.router.lifespan_context(app), \
                httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            document = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
            assert document["scopes_supported"] == ["admin"] and document["authorization_servers"] == [issuer.url]
            lacking = await client.post("/mcp", json={}, headers={"Authorization": f"Bearer {issuer.token(AUDIENCE)}"})
            assert lacking.status_code == 403 and 'error="insufficient_scope"' in lacking.headers["www-authenticate"]
            holding = issuer.token(AUDIENCE, scope="vision admin")
            passed = await client.post("/mcp", json={}, headers={"Authorization": f"Bearer {holding}"})
            assert passed.status_code not in (401, 403)  # through to the MCP transport (which wants a session)
