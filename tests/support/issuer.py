"""A stand-in OAuth authorization server on loopback for the JWT tests: its RFC 8414 metadata and a JWKS of keys
generated here (RSA, cryptography), and JWT access tokens signed with them (PyJWT), good or deliberately bad."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import servers


class Issuer:
    """Keys by kid; `published` are the kids in the JWKS (others sign tokens the server cannot know)."""

    def __init__(self) -> None:
        self.url = ""
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2", "k3")}
        self.published = ["k1"]
        self.jwks_fetches = 0

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append({**key, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, audience: str, *, kid: str = "k1", sign_with: str | None = None, lifetime: float = 300,
              not_before: float = 0, issuer: str | None = None, subject: str = "user-1", **claims: Any) -> str:
        now = time.time()
        payload = {"iss": issuer or self.url, "sub": subject, "aud": audience, "iat": int(now),
                   "exp": int(now + lifetime), "nbf": int(now + not_before), "client_id": "agent-app",
                   "scope": "vision", **claims}
        return jwt.encode(payload, self.keys[sign_with or kid], algorithm="RS256", headers={"kid": kid})


@contextmanager
def issuer_on_loopback() -> Iterator[Issuer]:
    issuer = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            if self.path == "/.well-known/oauth-authorization-server":
                body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                        "authorization_endpoint": issuer.url + "/authorize", "token_endpoint": issuer.url + "/token",
                        "response_types_supported": ["code"]}
            elif self.path == "/jwks":
                issuer.jwks_fetches += 1
                body = issuer.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with servers.loopback_http(Handler) as url:
        issuer.url = url
        yield issuer
