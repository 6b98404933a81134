"""The remote engine's failures as errors that say what to change: its HTTP refusals, its own short
explanations (never the request body or the API key), context overflows and transport failures."""

from __future__ import annotations

import json
import re
import socket
import ssl
from typing import Any

from ...errors import BusyError, ContextOverflowError, InputError, ModelUnavailableError, VisionError

RETRY_STATUSES = frozenset({429, 503})

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


def refusal(shown_url: str, status: int | None, detail: str, max_new_tokens: int | None, retries: int) -> VisionError:
    """The engine's refusal as an error that says what to change (never the request body or the key)."""
    said = (f"HTTP {status}" if status else "an error") + (f": {detail}" if detail else "")
    where = f"The remote engine at {shown_url}"
    if status in RETRY_STATUSES:
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
        return context_overflow(detail, max_new_tokens or 0, where)
    if status is not None and 400 <= status < 500:
        return InputError(
            f"{where} refused the request ({said}): use fewer or smaller images, fewer frames or a shorter "
            "question, or start a new session."
        )
    return ModelUnavailableError(f"{where} failed ({said}): retry, and check the engine's log if it keeps happening.")


def timeout_error(shown_url: str, timeout: float) -> BusyError:
    return BusyError(
        f"The remote engine at {shown_url} did not finish within MCP_VISION_REMOTE_TIMEOUT={timeout:g} s: ask for "
        "a shorter answer (max_new_tokens), retry when it is less busy, or raise MCP_VISION_REMOTE_TIMEOUT."
    )


def unreachable(shown_url: str, failure: str, attempts: int) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"The remote engine at MCP_VISION_BASE_URL={shown_url} could not be reached ({failure}; "
        f"{attempts} attempt{'s' if attempts != 1 else ''}): start the engine, or set MCP_VISION_BASE_URL to "
        "its address (such as http://127.0.0.1:23333/v1)."
    )


def connect_failure(shown_url: str, exc: BaseException) -> ModelUnavailableError | None:
    """The error for a failure no retry can mend (TLS, an unknown host), or None when a retry may help."""
    cause = root_cause(exc, (ssl.SSLError, socket.gaierror))
    if isinstance(cause, ssl.SSLError):
        return ModelUnavailableError(
            f"TLS to the remote engine at MCP_VISION_BASE_URL={shown_url} failed "
            f"({cause.reason or 'certificate error'}): check the address and the engine's certificate."
        )
    if isinstance(cause, socket.gaierror):
        return ModelUnavailableError(
            f"The remote engine's host in MCP_VISION_BASE_URL={shown_url} could not be resolved: "
            "set MCP_VISION_BASE_URL to the engine's address."
        )
    return None


def root_cause(exc: BaseException, wanted: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of a `wanted` type in `exc`'s chain: httpx2 wraps the socket's own error twice."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, wanted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe(exc: BaseException) -> str:
    """A transport failure in a few words, for messages and logs (never the request or its key)."""
    import httpx2

    cause = root_cause(exc, (ConnectionRefusedError, ConnectionResetError, TimeoutError, socket.timeout))
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError):
        return "connection reset"
    if isinstance(cause, (TimeoutError, socket.timeout)) or isinstance(exc, httpx2.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx2.RemoteProtocolError):
        said = str(exc).lower()
        if "without sending a response" in said or "server disconnected" in said:
            return "the engine closed the connection"
        if "complete message body" in said or "incomplete" in said:
            return "the answer was cut off"
    if isinstance(exc, OSError) and "all connection attempts failed" in str(exc).lower():
        return "connection refused"  # anyio's happy eyeballs: every address refused
    return type(exc).__name__


def engine_message(body: bytes | dict[str, Any], secret: str | None) -> str:
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


def context_overflow(detail: str, max_new_tokens: int, where: str) -> ContextOverflowError:
    limit = _LIMIT_NUMBER.search(detail)
    prompt = _PROMPT_NUMBER.search(detail)
    if limit and prompt:
        prompt_tokens = int(next(g for g in prompt.groups() if g))
        return ContextOverflowError(prompt_tokens, max_new_tokens, int(limit.group(1)))
    return ContextOverflowError(
        0, max_new_tokens, int(limit.group(1)) if limit else 0,
        reported=f"{where} says the conversation does not fit the model's context ({detail})",
    )


__all__ = [
    "RETRY_STATUSES", "connect_failure", "context_overflow", "describe", "engine_message", "refusal", "root_cause",
    "timeout_error", "unreachable",
]
