"""Sessions: server-minted handles that carry a conversation (turns with their media) between calls.

Held in memory only: a restart ends every session. Bounded by a session count (least recently
used evicted) and a time-to-live.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .backend.base import Turn
from .errors import SessionError


@dataclass
class Session:
    id: str
    turns: list[Turn] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def turn_count(self) -> int:
        """Number of question/answer exchanges so far."""
        return sum(1 for t in self.turns if t.role == "assistant")


class SessionStore:
    def __init__(self, max_sessions: int = 64, ttl_seconds: float = 3600.0) -> None:
        self.max_sessions = max_sessions
        self.ttl_seconds = ttl_seconds
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if now - s.last_used > self.ttl_seconds]:
            del self._sessions[sid]

    def create(self) -> Session:
        now = time.monotonic()
        session = Session(id="vs_" + secrets.token_urlsafe(24), created=now, last_used=now)  # 192 random bits
        with self._lock:
            self._expire(now)
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionError(
                    f"Unknown or expired session_id {session_id[:64]!r}: start a new session by calling "
                    "describe_image (or another media tool) without session_id."
                )
            session.last_used = now
            self._sessions.move_to_end(session_id)
            return session

    def get_or_create(self, session_id: str | None) -> Session:
        return self.create() if not session_id else self.get(session_id)

    def __len__(self) -> int:
        return len(self._sessions)


__all__ = ["Session", "SessionStore"]
