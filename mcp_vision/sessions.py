"""Sessions: server-minted handles that carry a conversation (turns with their media) between calls.

Held in memory only: a restart ends every session. Bounded by a session count (least recently
used evicted), a time-to-live, and per session a number of exchanges and of images; the oldest
exchanges (with their media) go first. A session also keeps small previews of its media for a viewer
(MCP Apps), bounded in bytes per session and over all sessions; they end with it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .backend.base import Turn
from .errors import SessionError
from .limits import MAX_EXCHANGES, MAX_IMAGES, MAX_PREVIEW_TOTAL, MAX_SESSION_PREVIEW_BYTES


@dataclass(eq=False)
class Session:
    id: str
    owner: str | None = None  # the principal that created it (None: the local user); only it may use it
    turns: list[Turn] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    dropped_turns: int = 0  # exchanges dropped so far to stay within bounds
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one call at a time per session
    previews: OrderedDict[str, bytes] = field(default_factory=OrderedDict)  # key -> JPEG, oldest first
    previews_made: int = 0  # previews ever kept (names the next one)

    @property
    def preview_bytes(self) -> int:
        return sum(len(data) for data in self.previews.values())

    @property
    def turn_count(self) -> int:
        """Number of question/answer exchanges so far (dropped ones included)."""
        return sum(1 for t in self.turns if t.role == "assistant") + self.dropped_turns


class SessionStore:
    def __init__(
        self,
        max_sessions: int = 64,
        ttl_seconds: float = 3600.0,
        on_evict: Callable[[str], None] | None = None,
        max_exchanges: int = MAX_EXCHANGES,
        max_images: int = MAX_IMAGES,
        max_preview_bytes: int = MAX_SESSION_PREVIEW_BYTES,
        max_preview_total: int = MAX_PREVIEW_TOTAL,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl_seconds = ttl_seconds
        self.max_exchanges = max_exchanges
        self.max_images = max_images
        self.max_preview_bytes = max_preview_bytes
        self.max_preview_total = max_preview_total
        self._on_evict = on_evict or (lambda _sid: None)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> list[str]:
        gone = [sid for sid, s in self._sessions.items() if now - s.last_used > self.ttl_seconds]
        for sid in gone:
            del self._sessions[sid]
        return gone

    def _evicted(self, ids: list[str]) -> None:
        for sid in ids:
            self._on_evict(sid)

    def create(self, owner: str | None = None) -> Session:
        now = time.monotonic()
        session = Session(id="vs_" + secrets.token_urlsafe(24), owner=owner, last_used=now)  # 192 random bits
        with self._lock:
            gone = self._expire(now)
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                gone.append(self._evict_one())
        self._evicted(gone)
        return session

    def _evict_one(self) -> str:
        """Make room: the least recently used session of the principal holding the most, so one caller opening
        many sessions ends its own, never another's (with one principal: the least recently used)."""
        held: dict[str | None, int] = {}
        for other in self._sessions.values():
            held[other.owner] = held.get(other.owner, 0) + 1
        most = max(held.values())
        victim = next(sid for sid, other in self._sessions.items() if held[other.owner] == most)
        del self._sessions[victim]
        return victim

    def get(self, session_id: str, owner: str | None = None) -> Session:
        """The session, for its owner only: another principal gets exactly the answer an unknown id gets (and
        its use touches nothing), so nothing tells whether someone else's session exists."""
        with self._lock:
            now = time.monotonic()
            gone = self._expire(now)
            session = self._sessions.get(session_id)
            if session is not None and session.owner != owner:
                session = None
            if session is not None:
                session.last_used = now
                self._sessions.move_to_end(session_id)
        self._evicted(gone)
        if session is None:
            raise SessionError(
                f"Unknown or expired session_id {session_id[:64]!r}: start a new session by calling "
                "describe_image (or another media tool) without session_id."
            )
        return session

    def keep_preview(self, session: Session, data: bytes) -> str:
        """Keep a preview in the session and return its key; the oldest previews (of this session, then of
        the least recently used sessions) go when the byte bounds are passed. The newest always stays."""
        with self._lock:
            session.previews_made += 1
            key = f"p{session.previews_made}"
            session.previews[key] = data
            while session.preview_bytes > self.max_preview_bytes and len(session.previews) > 1:
                session.previews.popitem(last=False)
            total = sum(s.preview_bytes for s in self._sessions.values())
            for other in [*self._sessions.values()]:  # least recently used first
                while total > self.max_preview_total and other.previews:
                    if other is session and len(other.previews) == 1:
                        break
                    total -= len(other.previews.popitem(last=False)[1])
        return key

    def preview(self, session_id: str, key: str, owner: str | None = None) -> bytes:
        """A preview the session holds, for the session's owner; an unknown or expired session or key, or
        another principal's session, is one SessionError, the same for all (nothing tells whether another
        session exists)."""
        with self._lock:
            gone = self._expire(time.monotonic())
            session = self._sessions.get(session_id)
            mine = session is not None and session.owner == owner
            data = session.previews.get(key) if mine else None
        self._evicted(gone)
        if data is None:
            raise SessionError(
                "No such preview: the session has ended or no longer holds it (previews are kept for the "
                "media of a live session only); call the tool again to see it."
            )
        return data

    def get_or_create(self, session_id: str | None, owner: str | None = None) -> Session:
        return self.create(owner) if not session_id else self.get(session_id, owner)

    def check(self, session_id: str | None, owner: str | None = None) -> None:
        """Fail before any work when a call names an unknown or expired session, or one `owner` did not create
        (no session_id is fine)."""
        if session_id:
            self.get(session_id, owner)

    def fits(self, turns: list[Turn]) -> bool:
        """Whether a conversation is within the per-session bounds."""
        exchanges = sum(1 for t in turns if t.role == "user")
        images = sum(t.image_count for t in turns)
        return exchanges <= self.max_exchanges and images <= self.max_images

    def histories(self, session: Session, new: list[Turn]) -> Iterator[tuple[list[Turn], int]]:
        """The session's history to send before `new`, each with the exchanges dropped from its start: first
        the longest that fits the per-session bounds, then one exchange shorter each time the caller asks
        again (the model said it does not fit its context), down to none."""
        history, dropped = list(session.turns), 0
        while history and not self.fits([*history, *new]):
            history, dropped = history[2:], dropped + 1
        while True:
            yield history, dropped
            if not history:
                return
            history, dropped = history[2:], dropped + 1

    def commit(self, session: Session, history: list[Turn], new: list[Turn], dropped: int) -> None:
        """The session continues from `history` (as `histories` gave it) with the `new` turns."""
        session.turns = [*history, *new]
        session.dropped_turns += dropped

    def append(self, session: Session, turns: list[Turn]) -> int:
        """Add an exchange, dropping the oldest ones beyond the bounds; returns how many were dropped."""
        history, dropped = next(self.histories(session, turns))
        self.commit(session, history, turns, dropped)
        return dropped

    def __len__(self) -> int:
        return len(self._sessions)


__all__ = ["Session", "SessionStore"]
