"""A stub OpenAI-compatible engine: a local HTTP server that speaks the chat-completions wire format
(streaming included), answers as told (`Reply`) and records every request; with the fixtures the remote
engine's tests use (`engine`, `remote_settings`, and `quick_backoff`, autouse where it is imported)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mcp_vision.backend.remote import RemoteBackend
from mcp_vision.settings import Settings

MODEL = "OpenGVLab/InternVL3-2B-hf"
KEY = "sk-test-SECRET-4242"
ANSWER = "Hello from the engine."


@dataclass
class Reply:
    """What the engine does with the next chat request."""

    status: int = 200
    pieces: tuple[str, ...] = ("Hello", " from", " the", " engine.")
    finish: str | None = "stop"
    usage: dict[str, Any] | None = field(
        default_factory=lambda: {"prompt_tokens": 321, "completion_tokens": 4, "total_tokens": 325}
    )
    delay: float = 0.0  # seconds before each piece
    hang: float = 0.0  # seconds before answering at all
    error: Any = None  # JSON body of a non-200 answer
    headers: dict[str, str] = field(default_factory=dict)
    done: bool = True  # end with data: [DONE]
    echo: bool = False  # answer with the text of the last message instead of `pieces`
    content_type: str = "text/event-stream"


class FakeEngine:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: deque[Reply] = deque()
        self.models: list[dict[str, Any]] = [{"id": MODEL, "object": "model", "owned_by": "vllm"}]
        self.models_status = 200
        self.sent_pieces = 0
        self.finished_streams = 0
        self.closed_early = threading.Event()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.server.engine = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def engine(self) -> FakeEngine:
        return self.server.engine  # type: ignore[attr-defined]

    def _record(self, body: Any = None) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.engine.requests.append({"method": self.command, "path": self.path, "headers": headers, "body": body})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _event(self, data: bytes) -> None:
        payload = b"data: " + data + b"\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def do_GET(self) -> None:
        self._record()
        if self.path == "/v1/models" and self.engine.models_status == 200:
            self._json(200, {"object": "list", "data": self.engine.models})
        else:
            self._json(self.engine.models_status if self.path == "/v1/models" else 404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self._record(body)
        engine = self.engine
        reply = engine.replies.popleft() if engine.replies else Reply()
        if reply.hang:
            time.sleep(reply.hang)
        if reply.status != 200:
            error = reply.error if reply.error is not None else {"error": {"message": "The engine is busy."}}
            self._json(reply.status, error, reply.headers)
            return
        with engine._lock:
            engine.active += 1
            engine.max_active = max(engine.max_active, engine.active)
        counted = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            self._event(json.dumps({**base, "choices": [first]}).encode())
            pieces = reply.pieces
            if reply.echo:
                content = body["messages"][-1]["content"]
                pieces = (content if isinstance(content, str) else "".join(
                    c.get("text", "") for c in content if c.get("type") == "text"
                ),)
            for index, piece in enumerate(pieces):
                if reply.delay:
                    time.sleep(reply.delay)
                last = index == len(pieces) - 1
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": reply.finish if last else None}
                self._event(json.dumps({**base, "choices": [choice]}).encode())
                engine.sent_pieces += 1
            # Generation is over: counted as no longer active before the client can see the end of the
            # stream (and send its next request), so max_active counts only overlapping generations.
            with engine._lock:
                engine.active -= 1
                counted = False
            if reply.usage:
                self._event(json.dumps({**base, "choices": [], "usage": reply.usage}).encode())
            if reply.done:
                self._event(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            with engine._lock:
                engine.finished_streams += 1
        except (BrokenPipeError, ConnectionResetError):
            engine.closed_early.set()
            self.close_connection = True
        finally:
            with engine._lock:
                if counted:
                    engine.active -= 1


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(RemoteBackend, "backoff_seconds", 0.01)


@pytest.fixture
def remote_settings(engine, media_dir) -> Settings:
    return Settings(
        backend="openai",
        base_url=engine.url,
        api_key=KEY,
        remote_model=MODEL,
        remote_retries=2,
        allowed_dirs=(media_dir,),
        max_new_tokens=16,
        max_tiles=6,
    )
