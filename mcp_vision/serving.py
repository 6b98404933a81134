"""The streamable-HTTP app: the MCP endpoint at `/mcp` (behind bearer-token authentication when configured),
its OAuth protected-resource metadata (RFC 9728), and the operator's `/healthz`, `/readyz` and `/metrics`.

Authentication is the MCP SDK's own: its bearer backend and `RequireAuthMiddleware` (401 with
`WWW-Authenticate` naming the metadata URL), its auth-context middleware (which the tools read the caller
from), and its protected-resource route. Nothing here is imported for stdio.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from .access import Access

log = logging.getLogger(__name__)

# The request headers the streamable-HTTP protocol has a page send (besides Content-Type and Accept), and the
# response headers its client must read; a cross-origin page may use exactly these.
CORS_REQUEST_HEADERS = (
    "Content-Type", "Accept", "Authorization", "Mcp-Session-Id", "MCP-Protocol-Version", "Last-Event-ID",
    "Mcp-Method", "Mcp-Name",
)
CORS_EXPOSED_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version", "WWW-Authenticate")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
METADATA_PATH = "/.well-known/oauth-protected-resource"
MCP_PATH = "/mcp"


def resource_url_for(host: str, port: int, configured: str | None) -> str:
    """This server's resource URL: the configured one, else the address it is served at."""
    if configured:
        return configured
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{MCP_PATH}"


def http_app(
    server: MCPServer, host: str, cors_origins: tuple[str, ...] = (), *, access: Access | None = None,
    public_metrics: bool = False,
) -> Any:
    """The app. Bound to a loopback host it keeps the SDK's DNS-rebinding protection (Host and Origin must be
    loopback, or one of `cors_origins`); with `cors_origins` it answers CORS (preflight included) for those
    origins only. With `access`, every request to `/mcp` (and `/metrics`, unless `public_metrics`) needs a
    valid bearer token; `/healthz`, `/readyz` and the metadata never do."""
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route, request_response

    security = None  # the SDK's choice: protection off beyond loopback
    if host in LOOPBACK_HOSTS:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *cors_origins],
        )
    mcp_app = server.streamable_http_app(host=host, transport_security=security, streamable_http_path=MCP_PATH)
    service = server.service  # type: ignore[attr-defined]
    from .metrics import PrometheusMetrics

    metrics = PrometheusMetrics(service)
    service.events = metrics
    guard = _Guard(access)
    # A request handler, or (guarded) the ASGI app around it: Route wraps a plain function itself.
    scrape = metrics.endpoint if public_metrics or access is None else guard(request_response(metrics.endpoint))
    routes: list[Any] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(service), methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
        *guard.metadata_routes(),
        Mount("/", app=guard(mcp_app)),  # the SDK's app: `/mcp`, and its lifespan (below)
    ]
    middleware: list[Middleware] = []
    if cors_origins:  # outermost: a 401 and a preflight carry the CORS headers too
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            allow_credentials=False,  # bearer tokens travel in Authorization, never in cookies
        ))
    middleware.extend(guard.middleware())
    return Starlette(routes=routes, middleware=middleware, lifespan=mcp_app.router.lifespan_context)


class _Guard:
    """The SDK's bearer-token pieces for `access` (nothing when it is None)."""

    def __init__(self, access: Access | None) -> None:
        self.access = access
        self.metadata_url: str | None = None
        if access is not None:
            from mcp.server.auth.routes import build_resource_metadata_url

            self.metadata_url = str(build_resource_metadata_url(_any_http_url(access.resource_url)))

    def middleware(self) -> list[Any]:
        """Read the bearer token (without requiring one) and put the caller where the tools find it."""
        if self.access is None:
            return []
        from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
        from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
        from starlette.middleware import Middleware
        from starlette.middleware.authentication import AuthenticationMiddleware

        # The audience is checked by the JWT verifier itself (file tokens have none), so no resource check here.
        return [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(self.access.verifier)),
            Middleware(AuthContextMiddleware),
        ]

    def __call__(self, app: Any) -> Any:
        """The ASGI `app` answering only a valid token: otherwise 401 with WWW-Authenticate naming the metadata
        URL (403 for a token without a required scope)."""
        if self.access is None:
            return app
        from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware

        return RequireAuthMiddleware(app, list(self.access.scopes), _any_http_url(self.metadata_url))

    def metadata_routes(self) -> list[Any]:
        """RFC 9728 protected-resource metadata, at the path its section 3.1 derives from the resource URL
        (`/.well-known/oauth-protected-resource/mcp`) and at the bare well-known path too."""
        if self.access is None:
            return []
        from mcp.server.auth.routes import cors_middleware, create_protected_resource_routes
        from starlette.routing import Route

        access = self.access
        if access.issuer is not None:
            # As strings: the SDK's metadata model keeps a path-less issuer exactly as written (no "/" added),
            # and RFC 8414 compares issuers as exact strings.
            routes = create_protected_resource_routes(
                resource_url=access.resource_url,  # type: ignore[arg-type]
                authorization_servers=[access.issuer],  # type: ignore[list-item]
                scopes_supported=list(access.scopes) or None,
                resource_name="mcp-vision",
            )
            handler = routes[0].endpoint
        else:
            # Named file tokens have no authorization server, which RFC 9728 allows (authorization_servers is
            # OPTIONAL) but the SDK's metadata model requires: the document is written here, with the same fields.
            document = {"resource": access.resource_url, "bearer_methods_supported": ["header"],
                        "resource_name": "mcp-vision"}
            if access.scopes:
                document["scopes_supported"] = list(access.scopes)

            async def metadata(_request: Any) -> Any:
                from starlette.responses import JSONResponse

                return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

            handler = cors_middleware(metadata, ["GET", "OPTIONS"])
        from urllib.parse import urlsplit

        paths = dict.fromkeys([urlsplit(self.metadata_url or "").path, METADATA_PATH])
        return [Route(path, endpoint=handler, methods=["GET", "OPTIONS"]) for path in paths]


def _any_http_url(url: str | None) -> Any:
    from pydantic import AnyHttpUrl

    return AnyHttpUrl(url) if url is not None else None


async def _healthz(_request: Any) -> Any:
    """The process is up and serving HTTP."""
    from starlette.responses import JSONResponse

    return JSONResponse({"status": "ok"})


def _readyz(service: Any) -> Any:
    async def readyz(_request: Any) -> Any:
        """200 once the model is loaded (the remote engine checked) and the last model call did not fail on the
        engine; 503 with the reason otherwise. It never starts the load (use --preload)."""
        from starlette.responses import JSONResponse

        state = service.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    return readyz


async def serve_http(
    server: MCPServer, host: str, port: int, cors_origins: tuple[str, ...] = (), *, access: Access | None = None,
    public_metrics: bool = False,
) -> None:
    """Serve `http_app` with uvicorn until SIGTERM/SIGINT."""
    import uvicorn

    app = http_app(server, host, cors_origins, access=access, public_metrics=public_metrics)
    config = uvicorn.Config(app, host=host, port=port, log_level=server.settings.log_level.lower())
    await uvicorn.Server(config).serve()


__all__ = ["http_app", "serve_http", "resource_url_for", "LOOPBACK_HOSTS", "METADATA_PATH", "MCP_PATH"]
