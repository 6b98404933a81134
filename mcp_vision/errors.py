"""The errors an agent can act on, typed by cause. Each message names the input and what to change."""

from __future__ import annotations

import re


class VisionError(Exception):
    """A failure the caller can fix; its message reaches the agent as an `isError` tool result."""


class InputError(VisionError):
    """A tool argument is wrong: missing file, bad range, unsupported type, too large."""


class NotFound(InputError):
    """A named file does not exist."""


class TooLarge(InputError):
    """The input is over a size limit (bytes, pixels, or memory to decode it)."""


class AccessError(InputError):
    """A path or URL lies outside what the server is allowed to read."""


class OutsideAllowedDirs(AccessError):
    """A file path lies outside the allowed directories (or the client's roots within them)."""


class DecoderFailure(InputError):
    """The decoder process could not finish: it crashed, ran out of time or of memory."""


class DecoderCrashed(DecoderFailure):
    """The decoder process died (a signal, an abort) while reading the input."""


class DecodeTimeout(DecoderFailure):
    """Decoding took longer than its deadline; the decoder process was killed."""


class DecodeTooLarge(DecoderFailure, TooLarge):
    """Decoding needed more memory than a decoder process may use."""


class DecodeFailed(InputError):
    """The decoder raised an unexpected error on the input (the file is damaged or unusual)."""


class ModelUnavailableError(VisionError):
    """The model cannot be loaded; the message says which setting to change."""


class ContextOverflowError(InputError):
    """The conversation does not fit the model's context."""

    FIX = "use fewer tiles (max_tiles), fewer images or frames, or a new session"

    def __init__(self, prompt_tokens: int, max_new_tokens: int, limit: int, *, reported: str | None = None) -> None:
        """`reported`: an engine's own explanation, when it gave no token counts to quote."""
        self.prompt_tokens, self.max_new_tokens, self.limit = prompt_tokens, max_new_tokens, limit
        if reported is not None:
            message = f"{reported}: {self.FIX}."
        else:
            message = (
                f"The prompt is {prompt_tokens:,} tokens and with {max_new_tokens} new tokens exceeds the model's "
                f"context of {limit:,}: {self.FIX}."
            )
        super().__init__(message)


class SessionError(InputError):
    """The session handle is unknown or expired."""


class BusyError(VisionError):
    """Too much work is queued; the caller should retry later."""


class ModelLoading(BusyError):
    """The model is still loading past the call's time budget; the load goes on and the next call finds it."""


class Cancelled(Exception):
    """The caller went away (the client cancelled): the work was stopped. Internal, never shown to an agent."""


def summary(exc: BaseException, limit: int = 160, *, with_type: bool = False) -> str:
    """One short line about an exception for a message: its first line of text (the type's name when it has
    none; `with_type` prefixes the type), MuPDF's `code=N:` prefix dropped, at most `limit` characters."""
    text = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
    lines = str(text or exc).strip().splitlines()
    first = re.sub(r"^code=\d+:\s*", "", lines[0]) if lines else ""
    if not first:
        return type(exc).__name__[:limit]
    return (f"{type(exc).__name__}: {first}" if with_type else first)[:limit]


__all__ = [
    "VisionError",
    "InputError",
    "NotFound",
    "TooLarge",
    "AccessError",
    "OutsideAllowedDirs",
    "DecoderFailure",
    "DecoderCrashed",
    "DecodeTimeout",
    "DecodeTooLarge",
    "DecodeFailed",
    "ModelUnavailableError",
    "ContextOverflowError",
    "SessionError",
    "BusyError",
    "ModelLoading",
    "Cancelled",
    "summary",
]
