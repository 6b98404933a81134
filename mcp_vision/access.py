"""Who is calling over streamable HTTP: bearer tokens, checked through the MCP SDK's auth pieces.

Two kinds, either or both: named static tokens from a file (one `name:token` a line, for a small team), and
JWT access tokens from an OAuth authorization server, validated against its JWKS (`iss`, `aud` = this server's
resource URL, `exp`, `nbf`, the signature). A valid token becomes the SDK's `AccessToken`; the principal it
stands for (the SDK's (client_id, issuer, subject)) owns the sessions it creates and has its own queue share.
Tokens are never logged, and never part of an error. MCP-free apart from the SDK's auth types; PyJWT and
httpx2 are imported where used.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken, TokenVerifier, principal_components

log = logging.getLogger(__name__)

TOKENS_FILE_ISSUER = "mcp-vision:tokens-file"  # the `iss` of a file token's principal: never a JWT issuer's
MIN_TOKEN_CHARS = 16
# Asymmetric signatures only: a JWKS publishes public keys, and `none` or HMAC would let anyone sign.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30  # clock skew allowed on exp and nbf
JWKS_MAX_AGE = 3600.0  # keys are fetched again after this long
JWKS_MIN_REFETCH = 30.0  # an unknown `kid` fetches the keys again at most this often (no fetch storms)
JWKS_TIMEOUT = 10.0


def principal(token: AccessToken | None) -> str | None:
    """The key a caller's sessions and queue share are held under: the SDK's (client_id, issuer, subject), or
    None for the local user (stdio, or HTTP without authentication)."""
    if token is None:
        return None
    return json.dumps(principal_components(token), separators=(",", ":"))


def principal_name(token: AccessToken) -> str:
    """A short readable name for a principal (logs and metrics never carry the token itself)."""
    return token.subject or token.client_id


# ------------------------------------------------------------------------------------------ static tokens


def read_tokens_file(path: Path) -> list[tuple[str, str]]:
    """The (name, token) pairs of a tokens file; ValueError with one sentence (never a token) when the file is
    missing, readable by others, or malformed."""
    shown = str(path)
    try:
        info = os.stat(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"MCP_VISION_AUTH_TOKENS_FILE names {shown}, which does not exist") from None
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"MCP_VISION_AUTH_TOKENS_FILE {shown} cannot be read ({type(exc).__name__})") from None
    if os.name != "nt" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"MCP_VISION_AUTH_TOKENS_FILE {shown} is open to other users (mode {stat.filemode(info.st_mode)}): "
            f"run chmod 600 {shown}"
        )
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, token = line.partition(":")
        name, token = name.strip(), token.strip()
        where = f"MCP_VISION_AUTH_TOKENS_FILE {shown} line {number}"
        if not colon or not name or not token:
            raise ValueError(f"{where} is not `name:token` (the line is not shown: it may hold a secret)")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"{where}: the token of {name!r} is shorter than {MIN_TOKEN_CHARS} characters; use a long random one "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if any(name == known for known, _ in entries):
            raise ValueError(f"{where} names {name!r} a second time: give each person or agent one name")
        if any(hmac.compare_digest(token.encode(), known.encode()) for _, known in entries):
            raise ValueError(f"{where}: the token of {name!r} is another name's token too: give each its own")
        entries.append((name, token))
    if not entries:
        raise ValueError(f"MCP_VISION_AUTH_TOKENS_FILE {shown} holds no `name:token` line")
    return entries


class StaticTokens:
    """A TokenVerifier for named tokens: every entry is compared in constant time (no early exit, so the time
    taken tells nothing about which entry, or how much of one, matched)."""

    def __init__(self, entries: list[tuple[str, str]], scopes: tuple[str, ...] = ()) -> None:
        self._entries = [(name, token.encode()) for name, token in entries]
        self._scopes = list(scopes)  # the scopes the server requires: a named token holds them all

    def __len__(self) -> int:
        return len(self._entries)

    async def verify_token(self, token: str) -> AccessToken | None:
        given = token.encode()
        found = None
        for name, secret in self._entries:
            if hmac.compare_digest(given, secret):
                found = name
        if found is None:
            return None
        return AccessToken(
            token=token, client_id=found, subject=found, scopes=self._scopes, claims={"iss": TOKENS_FILE_ISSUER}
        )


# ------------------------------------------------------------------------------------------------ JWTs


class JwtTokens:
    """A TokenVerifier for an authorization server's JWT access tokens (RFC 9068): the signature against the
    issuer's JWKS (cached, fetched again when a token names a key not yet known, and hourly), `iss` exactly the
    issuer, `aud` this server's resource URL, `exp` and `nbf` with 30 s leeway, and `sub` present."""

    def __init__(
        self, issuer: str, audience: str, *, jwks_url: str | None = None, scopes: tuple[str, ...] = (),
    ) -> None:
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self._scopes = scopes
        self._keys: dict[str | None, tuple[Any, str | None]] = {}  # kid -> (public key, the JWK's own `alg`)
        self._fetched = -JWKS_MAX_AGE  # time.monotonic() of the last fetch (tried)
        self._lock = asyncio.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None  # not a JWT at all (a mistyped or revoked file token, for instance)
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            log.info("bearer JWT refused: algorithm %r is not an asymmetric one this server accepts", algorithm)
            return None
        found = await self._key(header.get("kid"))
        if found is None:
            log.info("bearer JWT refused: its key %r is not in the issuer's JWKS", header.get("kid"))
            return None
        key, declared = found
        if declared is not None and declared != algorithm:
            log.info("bearer JWT refused: signed with %s, its key is declared for %s", algorithm, declared)
            return None
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:  # the reason in the log, never the token
            log.info("bearer JWT refused: %s", type(exc).__name__)
            return None
        scopes = claims.get("scope", claims.get("scp", ""))
        scopes = scopes.split() if isinstance(scopes, str) else [str(s) for s in scopes or ()]
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
            scopes=scopes,
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims["sub"]),
            claims={"iss": claims["iss"]},
        )

    async def _key(self, kid: str | None) -> tuple[Any, str | None] | None:
        """The JWKS key named `kid` (the only key when the token names none and the set has one)."""
        async with self._lock:
            age = time.monotonic() - self._fetched
            if age >= JWKS_MAX_AGE or (self._find(kid) is None and age >= JWKS_MIN_REFETCH):
                await self._refresh()
            return self._find(kid)

    def _find(self, kid: str | None) -> tuple[Any, str | None] | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        """Fetch the key set (and first where it is, from the issuer's metadata); on failure the keys known so
        far stay in use and the reason is logged."""
        import httpx2
        import jwt

        self._fetched = time.monotonic()
        try:
            async with httpx2.AsyncClient(timeout=JWKS_TIMEOUT, follow_redirects=False) as client:
                if self.jwks_url is None:
                    self.jwks_url = await self._discover(client)
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                listed = response.json()["keys"]
        except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("the issuer's keys could not be fetched (%s): %s", self.jwks_url or self.issuer,
                        type(exc).__name__)
            return
        keys: dict[str | None, tuple[Any, str | None]] = {}
        for data in listed if isinstance(listed, list) else ():
            if not isinstance(data, dict) or data.get("use", "sig") != "sig" or "d" in data:
                continue  # encryption keys, and private keys published by mistake, are never used
            try:
                keys[data.get("kid")] = (jwt.PyJWK(data).key, data.get("alg"))
            except jwt.PyJWTError:  # a key type or curve PyJWT does not know: the others still serve
                log.info("the issuer's JWKS key %r is of a kind this server cannot use", data.get("kid"))
        self._keys = keys

    async def _discover(self, client: Any) -> str:
        """The issuer's `jwks_uri`, from its authorization server metadata (RFC 8414) or OpenID discovery; the
        metadata must name this issuer (RFC 8414 section 3.3)."""
        from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls

        for url in build_oauth_authorization_server_metadata_discovery_urls(self.issuer, self.issuer):
            response = await client.get(url)
            if response.status_code != 200:
                continue
            metadata = response.json()
            if metadata.get("issuer") != self.issuer:
                raise ValueError(f"{url} names issuer {metadata.get('issuer')!r}, not {self.issuer!r}")
            if isinstance(metadata.get("jwks_uri"), str):
                return metadata["jwks_uri"]
        raise ValueError(f"no authorization server metadata with a jwks_uri found for {self.issuer}")


# ------------------------------------------------------------------------------------------------ both


class Tokens:
    """Either kind: a token that is not a file token is tried as a JWT."""

    def __init__(self, verifiers: list[TokenVerifier]) -> None:
        self._verifiers = verifiers

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self._verifiers:
            checked = await verifier.verify_token(token)
            if checked is not None:
                return checked
        return None


@dataclass(frozen=True)
class Access:
    """How HTTP callers authenticate: the verifier, this server's resource URL (the JWTs' audience, and where its
    protected-resource metadata is found), the authorization server (None: file tokens only) and the scopes
    every token must carry."""

    verifier: TokenVerifier
    resource_url: str
    issuer: str | None
    scopes: tuple[str, ...] = ()
    named_tokens: int = 0  # how many file tokens (for the start-up log)


def build_access(settings: Any, resource_url: str) -> Access | None:
    """The configured authentication (None when neither a tokens file nor an issuer is set); ValueError with one
    sentence when the configuration is wrong."""
    verifiers: list[TokenVerifier] = []
    named = 0
    if settings.auth_tokens_file is not None:
        static = StaticTokens(read_tokens_file(settings.auth_tokens_file), settings.auth_scopes)
        named = len(static)
        verifiers.append(static)
    if settings.auth_issuer is not None:
        verifiers.append(JwtTokens(
            settings.auth_issuer, resource_url, jwks_url=settings.auth_jwks_url, scopes=settings.auth_scopes,
        ))
    elif settings.auth_jwks_url is not None:
        raise ValueError("MCP_VISION_AUTH_JWKS_URL is set without MCP_VISION_AUTH_ISSUER: set the issuer too")
    if not verifiers:
        return None
    verifier = verifiers[0] if len(verifiers) == 1 else Tokens(verifiers)
    return Access(verifier, resource_url, settings.auth_issuer, settings.auth_scopes, named)


__all__ = [
    "Access", "StaticTokens", "JwtTokens", "Tokens", "build_access", "read_tokens_file", "principal",
    "principal_name", "TOKENS_FILE_ISSUER",
]
