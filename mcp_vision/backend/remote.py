"""A remote engine behind the same boundary: any OpenAI-compatible chat-completions server (vLLM,
LMDeploy's `api_server`), reached with the standard library only. Never imports torch.

What differs from the local engine, and where callers see it:
- The engine tiles images with its own settings; `ChatResult.tiles` reports the budget each image was
  sent with, not a measured count. One-tile images (video frames) are sent already at InternVL's
  448x448 input size, so any engine makes exactly one tile of them, as the local engine does.
- Token counts come from the engine's final `usage` chunk (`stream_options.include_usage`); an engine
  that sends none gets 0 for prompt and output tokens. `image_tokens` is always 0: engines do not
  report it.
- The conversation is re-sent whole on every call (sessions stay in the MCP server); the engine's
  prefix caching is what makes a follow-up cheap.
- LMDeploy's InternVL path reads only the first text item of a message and places images where
  `<IMAGE_TOKEN>` markers stand, so for LMDeploy (recognised by `owned_by` in `GET /models`) each user
  message is one text with markers, and each image carries its tile budget as `max_dynamic_patch`.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import __version__
from ..errors import BusyError, Cancelled, ContextOverflowError, InputError, ModelUnavailableError, VisionError
from .base import ChatResult, ImagePart, Turn

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ..settings import Settings
    from .base import Job

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds to open a connection (the whole call is bounded by MCP_VISION_REMOTE_TIMEOUT)
RETRY_STATUSES = frozenset({429, 503})
BACKOFF_SECONDS = 0.5  # first retry delay; doubles each retry
MAX_BACKOFF_SECONDS = 30.0
TILE_SIZE = 448  # InternVL's tile edge
LMDEPLOY_IMAGE_TOKEN = "<IMAGE_TOKEN>"
_POLL_SECONDS = 0.05
_MAX_ERROR_BODY = 64 * 1024
_MAX_MODELS_BODY = 4 * 1024 * 1024

_CONTEXT_WORDS = re.compile(
    r"context (length|window)|maximum model length|max_model_len|session[_ ]len|prompt is too long|"
    r"longer than the maximum",
    re.IGNORECASE,
)
_LIMIT_NUMBER = re.compile(
    r"(?:maximum context length is|maximum model length(?: of| is)?|max_model_len(?: of| is|=)?|"
    r"session[_ ]len(?: of| is|=)?)\s*\(?(\d+)",
    re.IGNORECASE,
)
_PROMPT_NUMBER = re.compile(
    r"(\d+) (?:tokens? )?in the messages|(\d+) input tokens|prompt \(length (\d+)\)|"
    r"input (?:token )?length (?:of |is )?(\d+)",
    re.IGNORECASE,
)


class OpenAIBackend:
    """Sends each conversation to `POST {base_url}/chat/completions` with `stream: true`."""

    backoff_seconds = BACKOFF_SECONDS  # tests shorten it

    def __init__(self, settings: Settings) -> None:
        if not settings.base_url:
            raise ModelUnavailableError(
                "MCP_VISION_BACKEND=openai needs MCP_VISION_BASE_URL: set it to the engine's address, "
                "such as http://127.0.0.1:23333/v1."
            )
        self._settings = settings
        parts = urlsplit(settings.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ModelUnavailableError(
                "MCP_VISION_BASE_URL is not an http(s) URL: set it to the engine's address, "
                "such as http://127.0.0.1:23333/v1."
            )
        self._https = parts.scheme == "https"
        self._tls = ssl.create_default_context() if self._https else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        # Shown in errors and logs: no credentials, no query string.
        self.shown_url = f"{parts.scheme}://{host}:{self._port}{self._prefix}"
        self._secret = settings.api_key or None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.remote_concurrency)
        self._checked = False
        self._model: str | None = settings.remote_model or None
        self.dialect = "openai"  # or "lmdeploy", decided by load()
        self._uris: dict[tuple[int, bool], str] = {}
        # Re-entrant: a garbage collection inside the lock may run an image's finalizer, which takes it.
        self._uris_lock = threading.RLock()

    @property
    def model_name(self) -> str:
        return self._model or "remote"

    @property
    def loaded(self) -> bool:
        return self._checked

    def forget(self, conversation: str) -> None:
        """Nothing to drop: the engine keeps no per-conversation state we own (its prefix cache is its own)."""

    # ---------------------------------------------------------------- the engine check

    def load(self, job: Job) -> float:
        """Check once that the engine answers and serves the model; return the seconds spent."""
        if self._checked:
            return 0.0
        with self._lock:
            if self._checked:
                return 0.0
            started = time.monotonic()
            job.report(0, None, f"checking the remote engine at {self.shown_url}")
            deadline = started + self._settings.remote_timeout
            try:
                with _ConnectionWatch(job, deadline) as watch:
                    status, body = self._get("/models", job, watch)
            except Cancelled:
                return time.monotonic() - started
            if status == 404 and self._model:
                # An engine without a model list: the first chat call will tell whether the model is right.
                log.warning("engine %s has no /models list; using model %r unchecked", self.shown_url, self._model)
            elif status == 404:
                raise ModelUnavailableError(
                    f"The remote engine at {self.shown_url} has no /models endpoint (HTTP 404): MCP_VISION_BASE_URL "
                    "usually ends in /v1 (such as http://127.0.0.1:23333/v1), or set MCP_VISION_REMOTE_MODEL."
                )
            else:
                self._choose_model(body)
            self._checked = True
            seconds = time.monotonic() - started
            log.info(
                "remote engine %s serves %s (%s dialect), checked in %.2f s",
                self.shown_url, self._model, self.dialect, seconds,
            )
            return seconds

    def _choose_model(self, body: bytes) -> None:
        try:
            listed = json.loads(body).get("data") or []
            models = {str(m["id"]): str(m.get("owned_by") or "") for m in listed if isinstance(m, dict) and "id" in m}
        except (ValueError, AttributeError, TypeError):
            models = {}
        wanted = self._model
        served = ", ".join(list(models)[:8]) or "nothing"
        if wanted and models and wanted not in models:
            raise ModelUnavailableError(
                f"MCP_VISION_REMOTE_MODEL={wanted!r} is not served by the remote engine at {self.shown_url} "
                f"(it serves {served}): set MCP_VISION_REMOTE_MODEL to one of those."
            )
        if not wanted:
            if len(models) != 1:
                raise ModelUnavailableError(
                    f"The remote engine at {self.shown_url} serves {served}: set MCP_VISION_REMOTE_MODEL to the "
                    "model to use."
                )
            wanted = next(iter(models))
        self._model = wanted
        if models.get(wanted, "").lower() == "lmdeploy":
            self.dialect = "lmdeploy"

    # ---------------------------------------------------------------- chat

    def chat(
        self,
        turns: list[Turn],
        job: Job,
        *,
        max_new_tokens: int,
        min_new_tokens: int | None = None,
        conversation: str | None = None,
    ) -> ChatResult:
        load_seconds = self.load(job)
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a question.")
        started = time.monotonic()
        tiles = [part.max_tiles for part in turns[-1].images]

        def cancelled(text: str = "") -> ChatResult:
            return ChatResult(
                text=text, prompt_tokens=0, output_tokens=0, image_tokens=0, tiles=tiles,
                finish_reason="time" if job.out_of_time() and not job.cancelled() else "cancelled",
                seconds=time.monotonic() - started, load_seconds=load_seconds,
            )

        if job.cancelled():
            return cancelled()
        payload = {
            "model": self.model_name,
            "messages": self.build_messages(turns),
            "max_tokens": max_new_tokens,
            **({"min_tokens": min_new_tokens} if min_new_tokens else {}),  # vLLM's and LMDeploy's name
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        deadline = started + self._settings.remote_timeout
        images = sum(len(t.images) for t in turns)
        with _ConnectionWatch(job, deadline) as watch:
            try:
                self._acquire_slot(job, watch)
            except Cancelled:
                return cancelled()
            try:
                waited = time.monotonic() - started
                job.report(0, max_new_tokens, f"asking {self.model_name} ({len(turns)} messages, {images} images)")
                log.debug(
                    "POST %s/chat/completions: %d messages, %d images, %d bytes",
                    self.shown_url, len(turns), images, len(body),
                )
                try:
                    conn, response = self._open(
                        "POST", "/chat/completions", body, job, watch, stream=True, max_new_tokens=max_new_tokens
                    )
                except Cancelled:
                    return cancelled()
                answered = time.monotonic()
                try:
                    streamed = self._read_stream(response, job, watch, max_new_tokens)
                finally:
                    conn.close()  # at once, also on cancellation: the engine sees the stream closed
            finally:
                self._slots.release()
        raw, finish, usage, first_token = streamed
        if finish == "cancelled":
            return cancelled(raw.strip())
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        ended = time.monotonic()
        return ChatResult(
            text=raw.strip(),
            raw_text=raw,  # the history keeps the answer exactly as generated, so the engine's prefix cache matches
            prompt_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
            image_tokens=0,
            tiles=tiles,
            finish_reason="length" if finish == "length" else "time" if finish == "time" else "stop",
            seconds=ended - started,
            load_seconds=load_seconds,
            cached_tokens=_count(details.get("cached_tokens")),
            stages={
                "wait_for_slot": round(waited, 4),
                "first_token": round((first_token or ended) - answered, 4),
                "stream": round(ended - (first_token or ended), 4),
            },
        )

    def chat_batch(
        self, conversations: list[list[Turn]], job: Job, *, max_new_tokens: int, min_new_tokens: int | None = None
    ) -> list[ChatResult]:
        """Send the conversations at once (at most MCP_VISION_REMOTE_CONCURRENCY in flight): the engine
        batches requests that arrive together. Results in order; the first error is raised."""
        if len(conversations) == 1:
            return [self.chat(conversations[0], job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)]
        from concurrent.futures import ThreadPoolExecutor

        workers = min(len(conversations), self._settings.remote_concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mcp-vision-remote-batch") as pool:
            futures = [
                pool.submit(self.chat, turns, job, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
                for turns in conversations
            ]
            return [future.result() for future in futures]

    def _acquire_slot(self, job: Job, watch: _ConnectionWatch) -> None:
        """At most MCP_VISION_REMOTE_CONCURRENCY calls in flight to the engine; the engine batches them."""
        reported = False
        while not self._slots.acquire(timeout=_POLL_SECONDS):
            if not reported:
                job.report(0, None, "waiting for a free slot on the remote engine")
                reported = True
            self._raise_if_stopped(watch)

    def _read_stream(
        self, response: http.client.HTTPResponse, job: Job, watch: _ConnectionWatch, max_new_tokens: int
    ) -> tuple[str, str | None, dict[str, Any], float | None]:
        """(answer as streamed, finish reason, usage, time of the first text) from the SSE stream."""
        pieces: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        first_token: float | None = None
        chunks = 0
        done = False
        try:
            for data in _sse_events(response):
                if data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise ModelUnavailableError(
                        f"The remote engine at {self.shown_url} sent a stream chunk that is not JSON: "
                        "check that MCP_VISION_BASE_URL points at an OpenAI-compatible API."
                    ) from None
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise self._error(None, _engine_message(chunk, self._secret), max_new_tokens)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces.append(text)
                        chunks += 1
                        first_token = first_token or time.monotonic()
                        if chunks % 16 == 0:
                            job.report(min(chunks, max_new_tokens), max_new_tokens, f"received {chunks} chunks")
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
                if job.cancelled() or job.out_of_time():
                    break
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if watch.reason is None and not job.cancelled():
                raise ModelUnavailableError(
                    f"The remote engine at {self.shown_url} broke off the answer ({_describe(exc)}): retry, and "
                    "check the engine's log if it keeps happening."
                ) from None
        text = "".join(pieces)
        if watch.reason == "cancelled" or job.cancelled():
            return text, "cancelled", usage, first_token
        if (watch.reason == "budget" or job.out_of_time()) and not done and finish is None:
            return text, "time", usage, first_token
        if watch.reason == "timeout":
            raise self._timeout_error()
        if not done and finish is None:
            raise ModelUnavailableError(
                f"The remote engine at {self.shown_url} ended the stream before the answer was complete: retry, "
                "and check the engine's log if it keeps happening."
            )
        return text, finish, usage, first_token

    # ---------------------------------------------------------------- messages

    def build_messages(self, turns: list[Turn]) -> list[dict[str, Any]]:
        """One message per turn, parts in order: text items and images as PNG data URIs."""
        return [self._message(turn) for turn in turns]

    def _message(self, turn: Turn) -> dict[str, Any]:
        if turn.role == "assistant" or not turn.images:
            # Plain-string content is the form every engine reads (LMDeploy would add an empty image tag
            # to a text-only list).
            return {"role": turn.role, "content": turn.text}
        if self.dialect == "lmdeploy":
            text = "".join(f"{LMDEPLOY_IMAGE_TOKEN}\n" if isinstance(p, ImagePart) else p for p in turn.parts)
            images = [
                {"type": "image_url", "image_url": {"url": self._data_uri(p), "max_dynamic_patch": p.max_tiles}}
                for p in turn.images
            ]
            return {"role": "user", "content": [{"type": "text", "text": text}, *images]}
        content: list[dict[str, Any]] = []
        for part in turn.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image_url", "image_url": {"url": self._data_uri(part)}})
            elif part:
                content.append({"type": "text", "text": part})
        return {"role": "user", "content": content}

    def _data_uri(self, part: ImagePart) -> str:
        """Encoded once per image while it lives: sessions re-send the same images on every follow-up."""
        one_tile = part.max_tiles == 1
        key = (id(part.image), one_tile)
        with self._uris_lock:
            uri = self._uris.get(key)
        if uri is None:
            uri = encode_image(part.image, (TILE_SIZE, TILE_SIZE) if one_tile else None)
            with self._uris_lock:
                if key not in self._uris:
                    self._uris[key] = uri
                    weakref.finalize(part.image, self._drop_uri, key)
        return uri

    def _drop_uri(self, key: tuple[int, bool]) -> None:
        with self._uris_lock:
            self._uris.pop(key, None)

    # ---------------------------------------------------------------- HTTP

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"mcp-vision/{__version__}",
        }
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        return headers

    def _get(self, path: str, job: Job, watch: _ConnectionWatch) -> tuple[int, bytes]:
        """(status, body) of a GET; 404 is returned, other failures raise."""
        conn, response = self._open("GET", path, None, job, watch, stream=False, allow={404})
        try:
            return response.status, response.read(_MAX_MODELS_BODY)
        except (OSError, http.client.HTTPException) as exc:
            self._raise_if_stopped(watch)
            raise ModelUnavailableError(
                f"The remote engine at {self.shown_url} broke off its answer ({_describe(exc)}): retry in a moment."
            ) from None
        finally:
            conn.close()

    def _open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        job: Job,
        watch: _ConnectionWatch,
        *,
        stream: bool,
        allow: frozenset[int] | set[int] = frozenset(),
        max_new_tokens: int | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request and return the open response once it has a 2xx (or allowed) status. Retries
        connection failures and 429/503 with exponential backoff; nothing is retried once a 2xx
        response has begun."""
        attempts = self._settings.remote_retries + 1
        headers = self._headers(stream)
        if body is not None:
            headers["Content-Type"] = "application/json"
        failure = "no answer"
        delay: float | None = None
        for attempt in range(attempts):
            if attempt:
                backoff = min(self.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                self._sleep(backoff if delay is None else delay, watch)
            delay = None
            remaining = watch.deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error()
            conn = self._connection(min(CONNECT_TIMEOUT, remaining))
            watch.attach(conn)
            try:
                conn.connect()
                self._raise_if_stopped(watch)
                if conn.sock is not None:
                    conn.sock.settimeout(max(remaining, 0.001))  # the watch enforces the exact deadline
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
            except (Cancelled, VisionError):
                conn.close()
                raise
            except ssl.SSLError as exc:
                conn.close()
                self._raise_if_stopped(watch)
                raise ModelUnavailableError(
                    f"TLS to the remote engine at MCP_VISION_BASE_URL={self.shown_url} failed "
                    f"({exc.reason or 'certificate error'}): check the address and the engine's certificate."
                ) from None
            except socket.gaierror:
                conn.close()
                self._raise_if_stopped(watch)
                raise ModelUnavailableError(
                    f"The remote engine's host in MCP_VISION_BASE_URL={self.shown_url} could not be resolved: "
                    "set MCP_VISION_BASE_URL to the engine's address."
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._raise_if_stopped(watch)
                failure = _describe(exc)
                log.warning("remote engine %s: %s (attempt %d of %d)", self.shown_url, failure, attempt + 1, attempts)
                continue
            status = response.status
            if 200 <= status < 300 or status in allow:
                return conn, response
            try:
                detail = _engine_message(response.read(_MAX_ERROR_BODY), self._secret)
            except (OSError, http.client.HTTPException):
                detail = ""
            finally:
                conn.close()
            self._raise_if_stopped(watch)
            if status in RETRY_STATUSES and attempt + 1 < attempts:
                delay = _retry_after(response.getheader("Retry-After"))
                log.warning(
                    "remote engine %s answered HTTP %d (attempt %d of %d); retrying",
                    self.shown_url, status, attempt + 1, attempts,
                )
                continue
            raise self._error(status, detail, max_new_tokens)
        raise ModelUnavailableError(
            f"The remote engine at MCP_VISION_BASE_URL={self.shown_url} could not be reached ({failure}; "
            f"{attempts} attempt{'s' if attempts != 1 else ''}): start the engine, or set MCP_VISION_BASE_URL to "
            "its address (such as http://127.0.0.1:23333/v1)."
        )

    def _sleep(self, seconds: float, watch: _ConnectionWatch) -> None:
        end = time.monotonic() + seconds
        while True:
            self._raise_if_stopped(watch)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _POLL_SECONDS))

    def _raise_if_stopped(self, watch: _ConnectionWatch) -> None:
        watch.check()
        if watch.reason in {"cancelled", "budget"}:  # before any text: nothing to return either way
            raise Cancelled
        if watch.reason == "timeout":
            raise self._timeout_error()

    # ---------------------------------------------------------------- errors

    def _timeout_error(self) -> BusyError:
        return BusyError(
            f"The remote engine at {self.shown_url} did not finish within MCP_VISION_REMOTE_TIMEOUT="
            f"{self._settings.remote_timeout:g} s: ask for a shorter answer (max_new_tokens), retry when it is "
            "less busy, or raise MCP_VISION_REMOTE_TIMEOUT."
        )

    def _error(self, status: int | None, detail: str, max_new_tokens: int | None) -> VisionError:
        """The engine's refusal as an error that says what to change (never the request body or the key)."""
        said = (f"HTTP {status}" if status else "an error") + (f": {detail}" if detail else "")
        where = f"The remote engine at {self.shown_url}"
        if status in RETRY_STATUSES:
            retries = self._settings.remote_retries
            return BusyError(
                f"{where} stayed busy ({said}) through {retries} retr{'y' if retries == 1 else 'ies'}: retry in a "
                "little while, or raise MCP_VISION_REMOTE_RETRIES."
            )
        if status in {401, 403}:
            return ModelUnavailableError(
                f"{where} refused the credentials ({said}): set MCP_VISION_API_KEY to the engine's API key."
            )
        if status == 404:
            return ModelUnavailableError(
                f"{where} answered {said}: check MCP_VISION_REMOTE_MODEL, and that MCP_VISION_BASE_URL ends in /v1."
            )
        if _CONTEXT_WORDS.search(detail) and (status is None or 400 <= status < 500):
            return _context_overflow(detail, max_new_tokens or 0, where)
        if status is not None and 400 <= status < 500:
            return InputError(
                f"{where} refused the request ({said}): use fewer or smaller images, fewer frames or a shorter "
                "question, or start a new session."
            )
        return ModelUnavailableError(
            f"{where} failed ({said}): retry, and check the engine's log if it keeps happening."
        )


class _ConnectionWatch:
    """Cuts the current connection the moment the job is cancelled or the deadline passes, so a read
    blocked on a silent engine returns at once. Checked every 50 ms on its own thread."""

    def __init__(self, job: Job, deadline: float) -> None:
        self.job = job
        self.deadline = deadline
        self.reason: str | None = None  # "cancelled", "budget" or "timeout" once stopped
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mcp-vision-remote-watch", daemon=True)

    def __enter__(self) -> _ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def attach(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conn = conn

    def check(self) -> None:
        """Decide now (between the watcher's polls) whether the call must stop."""
        if self.reason is None:
            if self.job.cancelled():
                self.reason = "cancelled"
            elif self.job.out_of_time():
                self.reason = "budget"  # the call's time budget: what was streamed is the answer
            elif time.monotonic() >= self.deadline:
                self.reason = "timeout"

    def _run(self) -> None:
        while not self._done.wait(_POLL_SECONDS):
            self.check()
            if self.reason is not None:
                with self._lock:
                    sock = getattr(self._conn, "sock", None)
                    if sock is not None:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                return


def encode_image(image: PILImage.Image, size: tuple[int, int] | None = None) -> str:
    """A lossless PNG data URI of the image as the model reads it (RGB; resized only when `size` is given)."""
    from PIL import Image

    img = image if image.mode == "RGB" else image.convert("RGB")
    if size is not None and img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _sse_events(response: http.client.HTTPResponse) -> Iterator[str]:
    """The `data` of each server-sent event (data lines joined by newlines, per the SSE format)."""
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            if data:
                yield "\n".join(data)
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)


def _engine_message(body: bytes | dict[str, Any], secret: str | None) -> str:
    """The engine's own short explanation from an error body, one line, at most 300 characters."""
    data: Any = body
    if isinstance(body, bytes):
        text = body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = text
    message: Any = data
    if isinstance(data, dict):
        error = data.get("error")
        inner = error.get("message") if isinstance(error, dict) else error
        message = inner or data.get("message") or data.get("detail")
    if message is None:
        return ""
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    message = " ".join(message.split())
    if message.startswith("<"):
        return ""  # an HTML error page (a proxy's, usually) says nothing useful
    if secret:
        message = message.replace(secret, "***")
    return message if len(message) <= 300 else message[:297] + "..."


def _context_overflow(detail: str, max_new_tokens: int, where: str) -> ContextOverflowError:
    limit = _LIMIT_NUMBER.search(detail)
    prompt = _PROMPT_NUMBER.search(detail)
    if limit and prompt:
        prompt_tokens = int(next(g for g in prompt.groups() if g))
        return ContextOverflowError(prompt_tokens, max_new_tokens, int(limit.group(1)))
    return ContextOverflowError(
        0, max_new_tokens, int(limit.group(1)) if limit else 0,
        reported=f"{where} says the conversation does not fit the model's context ({detail})",
    )


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, MAX_BACKOFF_SECONDS)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the engine closed the connection"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut off"
    return type(exc).__name__


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


__all__ = ["OpenAIBackend", "encode_image", "TILE_SIZE"]
