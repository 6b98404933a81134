"""The engine's HTTP API through httpx2: requests with retries (429/503 and failed connections, with
exponential backoff and Retry-After), the call's deadline, the job's stop flag, TLS, and the key kept out
of every message.

Each call runs on an asyncio loop of its own on the worker thread that made it (`anyio.run`), with
httpx2's AsyncClient: cancelling an anyio scope is what stops a request or a stream at once, wherever it
waits (connecting, waiting for the first byte, between chunks); httpx2's blocking Client has no way to be
interrupted from another thread. The job's stop flag is a threading.Event, so a small task polls it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from ... import __version__
from ...errors import Cancelled, ModelUnavailableError
from .errors import RETRY_STATUSES, connect_failure, describe, engine_message, refusal, timeout_error, unreachable

if TYPE_CHECKING:
    import anyio
    import httpx2

    from ...settings import Settings
    from ..base import Job

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0  # seconds to open a connection (the whole call is bounded by MCP_VISION_REMOTE_TIMEOUT)
MAX_BACKOFF_SECONDS = 30.0
POLL_SECONDS = 0.05  # how often the stop flag is looked at
MAX_ERROR_BODY = 64 * 1024
MAX_MODELS_BODY = 4 * 1024 * 1024


@dataclass
class Call:
    """One call to the engine: its client, its job, its deadline, and why it stopped once it has."""

    client: httpx2.AsyncClient
    job: Job
    deadline: float  # time.monotonic() by which it must be over (MCP_VISION_REMOTE_TIMEOUT)
    reason: str | None = None  # "cancelled", "budget" (the call's time budget) or "timeout" once stopped

    def check(self) -> str | None:
        """Decide now whether the call must stop, and why."""
        if self.reason is None:
            if self.job.cancelled():
                self.reason = "cancelled"
            elif self.job.out_of_time():
                self.reason = "budget"  # what was streamed is the answer
            elif time.monotonic() >= self.deadline:
                self.reason = "timeout"
        return self.reason


class EngineHTTP:
    """The engine's address, credentials and TLS, and the calls made to it."""

    def __init__(self, settings: Settings) -> None:
        import httpx2

        if not settings.base_url:
            raise ModelUnavailableError(
                "MCP_VISION_BACKEND=openai needs MCP_VISION_BASE_URL: set it to the engine's address, "
                "such as http://127.0.0.1:23333/v1."
            )
        parts = urlsplit(settings.base_url)
        try:
            port = parts.port
        except ValueError:
            port, parts = None, parts._replace(netloc="")  # an unparsable port: reported below
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ModelUnavailableError(
                "MCP_VISION_BASE_URL is not an http(s) URL: set it to the engine's address, "
                "such as http://127.0.0.1:23333/v1."
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        # Where requests go, and how the engine is named in errors and logs: no credentials (user:password@
        # is dropped, so httpx2 never turns it into a Basic header) and no query string.
        self.shown_url = f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"
        self.timeout = settings.remote_timeout
        self.retries = settings.remote_retries
        self._secret = settings.api_key or None
        # Built once (loading the CA store takes milliseconds; every call opens a client): httpx2's defaults,
        # which honour SSL_CERT_FILE / SSL_CERT_DIR (how a private CA is trusted).
        self._tls = httpx2.create_ssl_context()

    @property
    def secret(self) -> str | None:
        """The API key (to mask it in what the engine says back); never logged."""
        return self._secret

    def headers(self, stream: bool) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",  # streamed text arrives as sent, never held back by a decompressor
            "User-Agent": f"mcp-vision/{__version__}",
        }
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        return headers

    # ---------------------------------------------------------------- one call

    def run(self, job: Job, deadline: float, work: Callable[[Call], Awaitable[T]]) -> T:
        """Run `work` with a client on this thread; raise Cancelled when the job is stopped or out of its time
        budget first, the timeout error when `deadline` passes first."""
        import anyio

        return anyio.run(self._run, job, deadline, work, backend="asyncio")

    async def _run(self, job: Job, deadline: float, work: Callable[[Call], Awaitable[T]]) -> T:
        import anyio
        import httpx2

        done: list[T] = []
        failure: Exception | None = None
        # No environment: no proxy variables (the engine is addressed directly, as before) and no .netrc.
        async with httpx2.AsyncClient(verify=self._tls, trust_env=False, follow_redirects=False) as client:
            call = Call(client, job, deadline)
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch, call, group.cancel_scope)
                try:
                    done.append(await work(call))
                except Exception as exc:  # raised below: from inside the group anyio would wrap it in a group
                    failure = exc
                group.cancel_scope.cancel()  # ends the watch
        if failure is not None:
            raise failure
        if not done:  # cut by the watch
            self.raise_if_stopped(call)
            raise Cancelled
        return done[0]

    async def _watch(self, call: Call, scope: anyio.CancelScope) -> None:
        """Cut the call (its connection and stream) the moment the job stops or a deadline passes."""
        import anyio

        while call.check() is None:
            await anyio.sleep(POLL_SECONDS)
        scope.cancel()

    def raise_if_stopped(self, call: Call) -> None:
        reason = call.check()
        if reason in {"cancelled", "budget"}:  # before any text: nothing to return either way
            raise Cancelled
        if reason == "timeout":
            raise timeout_error(self.shown_url, self.timeout)

    # ---------------------------------------------------------------- requests

    async def get(
        self, call: Call, path: str, *, backoff: float = 0.5, allow: frozenset[int] = frozenset()
    ) -> tuple[int, bytes]:
        """(status, body) of a GET; statuses in `allow` are returned, other failures raise."""
        import httpx2

        async with self.open(call, "GET", path, None, stream=False, backoff=backoff, allow=allow) as response:
            try:
                return response.status_code, await read_capped(response, MAX_MODELS_BODY)
            except httpx2.TransportError as exc:
                self.raise_if_stopped(call)
                raise ModelUnavailableError(
                    f"The remote engine at {self.shown_url} broke off its answer ({describe(exc)}): retry in "
                    "a moment."
                ) from None

    @asynccontextmanager
    async def open(
        self,
        call: Call,
        method: str,
        path: str,
        body: bytes | None,
        *,
        stream: bool,
        backoff: float = 0.5,
        allow: frozenset[int] = frozenset(),
        max_new_tokens: int | None = None,
    ) -> AsyncIterator[httpx2.Response]:
        """The open response once it has a 2xx (or allowed) status; closed on leaving, at once, so the engine
        sees a stream given up. Retries failed connections and 429/503 with exponential backoff from `backoff`
        seconds (or the engine's Retry-After); nothing is retried once a 2xx response has begun."""
        import anyio
        import httpx2

        attempts = self.retries + 1
        headers = self.headers(stream)
        if body is not None:
            headers["Content-Type"] = "application/json"
        failure = "no answer"
        delay: float | None = None
        for attempt in range(attempts):
            if attempt:
                await anyio.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS) if delay is None else delay)
            delay = None
            remaining = call.deadline - time.monotonic()
            if remaining <= 0:
                raise timeout_error(self.shown_url, self.timeout)
            request = call.client.build_request(
                method, self.shown_url + path, content=body, headers=headers,
                # The watch enforces the exact deadline; these only bound each step.
                timeout=httpx2.Timeout(remaining, connect=min(CONNECT_TIMEOUT, remaining)),
            )
            try:
                response = await call.client.send(request, stream=True)
            except httpx2.TransportError as exc:
                self.raise_if_stopped(call)
                fatal = connect_failure(self.shown_url, exc)
                if fatal is not None:
                    raise fatal from None
                failure = describe(exc)
                log.warning("remote engine %s: %s (attempt %d of %d)", self.shown_url, failure, attempt + 1, attempts)
                continue
            status = response.status_code
            if 200 <= status < 300 or status in allow:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            try:
                detail = engine_message(await read_capped(response, MAX_ERROR_BODY), self._secret)
            except httpx2.TransportError:
                detail = ""
            finally:
                await response.aclose()
            self.raise_if_stopped(call)
            if status in RETRY_STATUSES and attempt + 1 < attempts:
                delay = retry_after(response.headers.get("Retry-After"))
                log.warning(
                    "remote engine %s answered HTTP %d (attempt %d of %d); retrying",
                    self.shown_url, status, attempt + 1, attempts,
                )
                continue
            raise refusal(self.shown_url, status, detail, max_new_tokens, self.retries)
        raise unreachable(self.shown_url, failure, attempts)


async def read_capped(response: httpx2.Response, limit: int) -> bytes:
    """At most `limit` bytes of the body (what an error or model list needs; the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (capped), or None when absent or not a number of seconds."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, MAX_BACKOFF_SECONDS)


__all__ = ["CONNECT_TIMEOUT", "Call", "EngineHTTP", "MAX_BACKOFF_SECONDS", "read_capped", "retry_after"]
