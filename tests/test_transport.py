"""The real command's transports: streamable HTTP binds loopback with DNS-rebinding protection on, and
the stdio server ends cleanly on SIGTERM (even mid-generation, leaving no decoder process behind) and
on end of input."""

from __future__ import annotations

import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mcp import Client

from . import hostile, servers
from .servers import server_env

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


def _post(port: int, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        conn.request("POST", "/mcp", body=json.dumps(INITIALIZE), headers={**base, **headers})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture
def http_server(tmp_path, media_dir):
    log = tmp_path / "server.log"
    with servers.http_server(server_env(tmp_path / "no-model", media_dir), media_dir, log) as (port, proc):
        yield port, proc, log


async def test_http_binds_loopback_and_refuses_rebound_hosts(http_server):
    port, proc, log = http_server
    assert _listening_addresses(port) == {"127.0.0.1"}
    # A page on evil.example whose name was re-pointed at 127.0.0.1 sends its own Host and Origin.
    status, body = _post(port, {"Host": "evil.example"})
    assert status == 421 and "Host" in body
    status, _ = _post(port, {"Host": f"evil.example:{port}"})
    assert status == 421
    status, _ = _post(port, {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example"})
    assert status == 403
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, _ = _post(port, {"Host": host})
        assert status == 200
    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        tools = await client.list_tools()
        bad = await client.call_tool("describe_image", {"image": "/etc/passwd"})
    assert len(tools.tools) == 6
    assert bad.is_error and "outside the allowed directories" in bad.content[0].text
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal: the conventional 143 (-15 here).
    assert proc.wait(30) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "Finished server process" in text and "Traceback" not in text


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_mid_generation_ends_the_stdio_server_cleanly(tiny_model_dir, media_dir):
    (media_dir / "x.png").write_bytes(hostile.png())
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_vision"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=server_env(tiny_model_dir, media_dir, MCP_VISION_MAX_TILES="1"), cwd=media_dir, text=True,
    )
    try:
        call = {
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {
                "name": "describe_image", "arguments": {"image": "x.png", "max_new_tokens": 4000},
                "_meta": {"progressToken": "p"},
            },
        }
        for message in (INITIALIZE, {"jsonrpc": "2.0", "method": "notifications/initialized"}, call):
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        deadline = time.monotonic() + 240
        while True:  # wait until the model is generating
            try:
                message = json.loads(lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                pytest.fail("generation never started")
            assert message.get("id") != 2, f"the call ended before it could be stopped: {message}"
            if str(message.get("params", {}).get("message", "")).startswith("generating ("):
                break
        helpers = _descendants(proc.pid)  # the decoder fork server and its worker
        assert helpers, "the image was decoded in a worker process"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, stderr[-2000:]
    assert "Traceback" not in stderr and "SIGTERM received: shutting down" in stderr
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in helpers), "decoder processes outlived the server"


def test_end_of_input_ends_the_stdio_server_cleanly(tmp_path, media_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_vision"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=server_env(tmp_path / "no-model", media_dir), cwd=media_dir, text=True,
    )
    try:
        for message in (
            INITIALIZE,
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ):
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        replies = [json.loads(proc.stdout.readline()) for _ in range(2)]  # both answered before the EOF
        proc.stdin.close()
        code = proc.wait(60)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [r["id"] for r in replies] == [1, 2]
    assert code == 0 and "Traceback" not in stderr
