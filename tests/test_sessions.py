from __future__ import annotations

import pytest

from mcp_vision.backend.base import Turn
from mcp_vision.errors import SessionError
from mcp_vision.sessions import SessionStore


def test_ids_are_unguessable_and_distinct():
    store = SessionStore()
    ids = {store.create().id for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) >= 3 + 32 for i in ids)  # vs_ + 192 bits in base64url


def test_unknown_session_says_to_start_a_new_one():
    with pytest.raises(SessionError, match="start a new session"):
        SessionStore().get("vs_nope")


def test_least_recently_used_session_is_evicted():
    store = SessionStore(max_sessions=2)
    a, b = store.create(), store.create()
    store.get(a.id)  # a is now more recent than b
    store.create()
    assert store.get(a.id) is a
    with pytest.raises(SessionError):
        store.get(b.id)


def test_sessions_expire(monkeypatch):
    import mcp_vision.sessions as sessions

    now = [1000.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: now[0])
    store = SessionStore(ttl_seconds=60)
    s = store.create()
    now[0] += 61
    with pytest.raises(SessionError):
        store.get(s.id)


def test_turn_count_counts_answers():
    store = SessionStore()
    s = store.create()
    s.turns += [Turn.user("q"), Turn.assistant("a"), Turn.user("q2"), Turn.assistant("a2")]
    assert s.turn_count == 2


def test_sessions_belong_to_their_principal_and_a_crowd_of_one_evicts_its_own():
    store = SessionStore(max_sessions=4)
    alice = store.create("alice")
    store.keep_preview(alice, b"jpeg")
    with pytest.raises(SessionError) as foreign:
        store.get(alice.id, "bob")
    with pytest.raises(SessionError) as unknown:
        store.get("vs_" + "x" * 32, "bob")
    assert str(foreign.value).replace(alice.id, "ID") == str(unknown.value).replace("vs_" + "x" * 32, "ID")
    with pytest.raises(SessionError) as foreign_preview:
        store.preview(alice.id, "p1", "bob")
    with pytest.raises(SessionError) as unknown_preview:
        store.preview("vs_" + "x" * 32, "p1", "bob")
    assert str(foreign_preview.value) == str(unknown_preview.value)
    assert store.preview(alice.id, "p1", "alice") == b"jpeg" and store.get(alice.id, "alice") is alice
    with pytest.raises(SessionError):
        store.get(alice.id)  # the local user is a principal too
    # Bob opens many sessions: only his own go.
    bobs = [store.create("bob") for _ in range(6)]
    assert store.get(alice.id, "alice") is alice
    assert [s.id for s in bobs[-3:]] == [store.get(s.id, "bob").id for s in bobs[-3:]]
    assert len(store) == 4
