"""The names the local engine had when it ran InternVL only: `InternVLBackend` is the local engine
(local.LocalBackend, any supported family), `KEEP_UNQUANTIZED` InternVL's NF4 skip list."""

from __future__ import annotations

from .families import INTERNVL
from .local import LocalBackend

InternVLBackend = LocalBackend

# Full module prefixes: bitsandbytes matches these against qualified names, short names match nothing.
KEEP_UNQUANTIZED = list(INTERNVL.keep_unquantized)

__all__ = ["InternVLBackend", "KEEP_UNQUANTIZED"]
