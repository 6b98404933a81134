"""Starting the real server as a subprocess, for the tests that talk to it over stdio or HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER = [sys.executable, "-m", "mcp_vision"]
REPO = Path(__file__).resolve().parents[1]


def server_env(model: Path | str, media: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any MCP_VISION_* or PYMUPDF_* of its own (the server must keep MuPDF
    off stdout by itself), pointed at `model` and allowed to read `media`, offline, on the CPU, on the PyTorch
    engine (the OpenVINO engine's own tests convert into a temporary cache; these never write to ~/.cache)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_VISION_", "PYMUPDF_"))}
    env.update({
        "MCP_VISION_MODEL": str(model),
        "MCP_VISION_ALLOWED_DIRS": str(media),
        "MCP_VISION_DEVICE": "cpu",
        "MCP_VISION_BACKEND": "local",
        "HF_HUB_OFFLINE": "1",
        # This checkout's package, whatever the environment has installed (an editable install of another one).
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        **extra,
    })
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(
    env: dict[str, str], cwd: Path, log: Path, *args: str, port: int | None = None
) -> Iterator[tuple[int, subprocess.Popen]]:
    """The server on streamable HTTP at `port` (a free one by default), once it listens; its output goes to `log`."""
    port = port or free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*SERVER, "--transport", "streamable-http", "--port", str(port), *args],
            env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the HTTP server did not start listening"
                time.sleep(0.1)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def loopback_http(handler: type) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 answering with `handler`; yields its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
