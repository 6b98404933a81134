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
    "SessionError",
    "BusyError",
    "NotImplementedYetError",
]
