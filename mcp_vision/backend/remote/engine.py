"""RemoteBackend: the conversation sent to `POST {base_url}/chat/completions` with `stream: true`, the
streamed answer read back as a ChatResult; the engine checked once (`GET {base_url}/models`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import Cancelled, InputError, ModelUnavailableError
from ...grounding import grounding_family
from ..base import Backend, ChatResult, Turn
from .errors import describe, engine_message, refusal
from .http import POLL_SECONDS, Call, EngineHTTP
from .messages import Messages

if TYPE_CHECKING:
    import httpx2

    from ...settings import Settings
    from ..base import Job

log = logging.getLogger(__name__)

BACKOFF_SECONDS = 0.5  # first retry delay; doubles each retry


@dataclass
class _Streamed:
    """What a stream has brought so far (kept when the call is cut: a cancelled answer keeps its text)."""

    pieces: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    began: float | None = None  # when the engine answered (the stream opened)
    first_token: float | None = None
    done: bool = False  # data: [DONE] arrived

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class RemoteBackend(Backend):
    """An OpenAI-compatible engine in another process: nothing loads here; calls may overlap (the engine
    batches them), at most MCP_VISION_REMOTE_CONCURRENCY at a time."""

    engine = "remote"
    remote = True
    backoff_seconds = BACKOFF_SECONDS  # tests shorten it

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http = EngineHTTP(settings)
        self.shown_url = self._http.shown_url  # no credentials, no query string: safe in errors and logs
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.remote_concurrency)
        self._checked = False
        self._model: str | None = settings.remote_model or None
        self._context_length: int | None = None
        self._messages = Messages()
        self._uris = self._messages.uris  # the encoded images, by image (tests watch it empty as images die)

    # ---------------------------------------------------------------- the declared contract

    @property
    def model_name(self) -> str:
        return self._model or "remote"

    @property
    def loaded(self) -> bool:
        return self._checked

    @property
    def device(self) -> str:
        return "remote"

    @property
    def context_length(self) -> int | None:
        """What the engine's model list reports (vLLM's `max_model_len`); None when it says nothing."""
        return self._context_length

    def parameter_counts(self) -> tuple[int, int] | None:
        return None  # the engine does not say

    def compute_rate(self) -> float | None:
        return None  # measured by the first answers instead

    @property
    def takes_video(self) -> bool:
        return False  # frames go as numbered images: the chat-completions API has no frame times

    @property
    def grounding_family(self) -> str:
        """From the served model's name (MCP_VISION_REMOTE_MODEL, else the one the engine serves)."""
        return grounding_family(self._settings.remote_model or self.model_name)

    @property
    def dialect(self) -> str:
        """"openai", or "lmdeploy" (one text with image markers), decided by the engine check."""
        return self._messages.dialect

    def forget(self, conversation: str) -> None:
        """Nothing to drop: the engine keeps no per-conversation state we own (its prefix cache is its own)."""

    def build_messages(self, turns: list[Turn]) -> list[dict[str, Any]]:
        """One message per turn, parts in order: text items and images as PNG data URIs."""
        return self._messages.build(turns)

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

            async def listed(call: Call) -> tuple[int, bytes]:
                return await self._http.get(call, "/models", backoff=self.backoff_seconds, allow=frozenset({404}))

            try:
                status, body = self._http.run(job, started + self._settings.remote_timeout, listed)
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
            entries = {str(m["id"]): m for m in listed if isinstance(m, dict) and "id" in m}
        except (ValueError, AttributeError, TypeError):
            entries = {}
        models = {name: str(m.get("owned_by") or "") for name, m in entries.items()}
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
            self._messages.dialect = "lmdeploy"
        # vLLM lists `max_model_len`; other engines may say `context_length`; many say nothing.
        entry = entries.get(wanted) or {}
        for key in ("max_model_len", "context_length"):
            value = entry.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                self._context_length = value
                break

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
                seconds=time.monotonic() - started, load_seconds=load_seconds, engine=self.engine,
            )

        if job.cancelled():
            return cancelled()
        payload = {
            "model": self.model_name,
            "messages": self.build_messages(turns),
            "max_tokens": max_new_tokens,
            **({"min_tokens": min_new_tokens} if min_new_tokens else {}),  # vLLM's and LMDeploy's name
            "temperature": 0,
            # vLLM's and LMDeploy's names: keep the special tokens the model writes (Qwen2-VL's tokenizer flags
            # its box markup <|box_start|>... special, so the default decode loses every box locate asks for),
            # without the spaces the servers otherwise put around them; the end of turn is not in the text.
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        images = sum(len(t.images) for t in turns)
        streamed = _Streamed()
        waited = 0.0

        async def ask(call: Call) -> None:
            nonlocal waited
            await self._acquire_slot(call)
            try:
                waited = time.monotonic() - started
                job.report(0, max_new_tokens, f"asking {self.model_name} ({len(turns)} messages, {images} images)")
                log.debug(
                    "POST %s/chat/completions: %d messages, %d images, %d bytes",
                    self.shown_url, len(turns), images, len(body),
                )
                async with self._http.open(
                    call, "POST", "/chat/completions", body, stream=True, backoff=self.backoff_seconds,
                    max_new_tokens=max_new_tokens,
                ) as response:
                    streamed.began = time.monotonic()
                    await self._read_stream(response, call, streamed, max_new_tokens)
            finally:
                self._slots.release()

        try:
            self._http.run(job, started + self._settings.remote_timeout, ask)
        except Cancelled:
            # Cut by the job's stop flag or its time budget: before the stream, nothing to keep; during it,
            # the text so far.
            if streamed.began is None or job.cancelled():
                return cancelled(streamed.text.strip())
        raw = streamed.text
        if job.cancelled():
            return cancelled(raw.strip())
        finish = streamed.finish
        if job.out_of_time() and not streamed.done and finish is None:
            finish = "time"
        elif not streamed.done and finish is None:
            raise ModelUnavailableError(
                f"The remote engine at {self.shown_url} ended the stream before the answer was complete: retry, "
                "and check the engine's log if it keeps happening."
            )
        usage = streamed.usage
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        ended = time.monotonic()
        answered = streamed.began or ended
        first_token = streamed.first_token or ended
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
            engine=self.engine,
            stages={
                "wait_for_slot": round(waited, 4),
                "first_token": round(first_token - answered, 4),
                "stream": round(ended - first_token, 4),
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

    async def _acquire_slot(self, call: Call) -> None:
        """At most MCP_VISION_REMOTE_CONCURRENCY calls in flight to the engine; the engine batches them. The
        slots are shared by the worker's threads, each on its own loop, hence a threading semaphore, polled."""
        import anyio

        reported = False
        while not self._slots.acquire(blocking=False):
            if not reported:
                call.job.report(0, None, "waiting for a free slot on the remote engine")
                reported = True
            await anyio.sleep(POLL_SECONDS)

    async def _read_stream(self, response: httpx2.Response, call: Call, streamed: _Streamed, max_new_tokens: int) -> None:
        """Read the server-sent events into `streamed` until [DONE], the end of the stream, or the job stops."""
        import httpx2

        job = call.job
        kind = (response.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if kind != "text/event-stream":
            raise ModelUnavailableError(
                f"The remote engine at {self.shown_url} answered with Content-Type {kind[:60] or 'none'!r} instead of "
                "an event stream: check that MCP_VISION_BASE_URL points at an OpenAI-compatible API."
            )
        chunks = 0
        try:
            async for event in httpx2.EventSource(response):
                if not event.data.strip():
                    continue  # an event of only `id:`, `retry:` or an empty `data:`
                if event.data.strip() == "[DONE]":
                    streamed.done = True
                    return
                try:
                    chunk = json.loads(event.data)
                except ValueError:
                    raise ModelUnavailableError(
                        f"The remote engine at {self.shown_url} sent a stream chunk that is not JSON: "
                        "check that MCP_VISION_BASE_URL points at an OpenAI-compatible API."
                    ) from None
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise refusal(
                        self.shown_url, None, engine_message(chunk, self._http.secret), max_new_tokens,
                        self._settings.remote_retries,
                    )
                if isinstance(chunk.get("usage"), dict):
                    streamed.usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        streamed.pieces.append(text)
                        chunks += 1
                        streamed.first_token = streamed.first_token or time.monotonic()
                        if chunks % 16 == 0:
                            job.report(min(chunks, max_new_tokens), max_new_tokens, f"received {chunks} chunks")
                    if choice.get("finish_reason"):
                        streamed.finish = str(choice["finish_reason"])
                if job.cancelled() or job.out_of_time():
                    return
        except httpx2.SSEError:  # the content type is checked above: an event over httpx2's 1 MiB limit
            raise ModelUnavailableError(
                f"The remote engine at {self.shown_url} sent a stream event over 1 MiB: retry, and check the "
                "engine's log if it keeps happening."
            ) from None
        except httpx2.TransportError as exc:
            if call.check() is None:
                raise ModelUnavailableError(
                    f"The remote engine at {self.shown_url} broke off the answer ({describe(exc)}): retry, "
                    "and check the engine's log if it keeps happening."
                ) from None
            self._http.raise_if_stopped(call)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


__all__ = ["RemoteBackend"]
