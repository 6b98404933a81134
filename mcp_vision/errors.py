"""The errors an agent can act on. Each message names the input and what to change."""

from __future__ import annotations


class VisionError(Exception):
    """A failure the caller can fix; its message reaches the agent as an `isError` tool result."""


class InputError(VisionError):
    """A tool argument is wrong: missing file, bad range, unsupported type, too large."""


class AccessError(InputError):
    """A path or URL lies outside what the server is allowed to read."""


class ModelUnavailableError(VisionError):
    """The model cannot be loaded; the message says which setting to change."""


class ContextOverflowError(InputError):
    """The conversation does not fit the model's context."""

    def __init__(self, prompt_tokens: int, max_new_tokens: int, limit: int) -> None:
        self.prompt_tokens, self.max_new_tokens, self.limit = prompt_tokens, max_new_tokens, limit
        super().__init__(
            f"The prompt is {prompt_tokens:,} tokens and with {max_new_tokens} new tokens exceeds the model's "
            f"context of {limit:,}: use fewer tiles (max_tiles), fewer images or frames, or a new session."
        )


class SessionError(InputError):
    """The session handle is unknown or expired."""


class BusyError(VisionError):
    """Too much work is queued; the caller should retry later."""


class NotImplementedYetError(VisionError):
    """A tool whose capability has not been built yet."""


__all__ = [
    "VisionError",
    "InputError",
    "AccessError",
    "ModelUnavailableError",
    "ContextOverflowError",
    "SessionError",
    "BusyError",
    "NotImplementedYetError",
]
