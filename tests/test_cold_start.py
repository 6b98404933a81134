"""Cold start: importing the package, --help, initialize and tools/list never import torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = (
    "torch", "transformers", "bitsandbytes", "accelerate", "fitz", "pymupdf", "av", "PIL", "pillow_heif", "openvino", "nncf",
    "pymupdf4llm", "onnxruntime",  # the layout step of ocr_document (PyMuPDF Layout runs its model on onnxruntime)
)


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_and_tools_list_do_not_import_heavy_libraries(tmp_path):
    out = _run(
        f"""
        import sys, anyio
        from mcp import Client
        from mcp_vision.server import build_server
        from mcp_vision.settings import Settings

        async def main():
            server = build_server(Settings(model={str(tmp_path)!r}))
            async with Client(server) as client:
                tools = await client.list_tools()
                assert len(tools.tools) == 6
        anyio.run(main)
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert out.strip() == "", f"imported at cold start: {out.strip()}"


def test_help_does_not_import_torch():
    out = _run(
        """
        import sys, contextlib, io
        from mcp_vision.cli import run
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            try:
                run(["--help"])
            except SystemExit:
                pass
        assert "MCP_VISION_MODEL" in buf.getvalue()
        print("torch" in sys.modules)
        """
    )
    assert out.strip() == "False"


def test_stdio_initialize_and_list_without_torch(tmp_path):
    """The real command: initialize + tools/list answered, and the process never loaded torch."""
    import json

    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: sys.stderr.write('TORCH_LOADED=%s OPENVINO_LOADED=%s\\n' % ('torch' in sys.modules, 'openvino' in sys.modules)))\n"
        "from mcp_vision import main\n"
        "main([])\n"
    )
    # Keep stdin open until tools/list is answered: at end of input the server may exit before replying.
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    for request in requests:
        proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if json.loads(line).get("id") == 2:
            break
    rest, stderr = proc.communicate(timeout=60)
    replies = {m["id"]: m for m in map(json.loads, lines + rest.splitlines()) if "id" in m}
    assert replies[1]["result"]["serverInfo"]["name"] == "mcp-vision"
    assert len(replies[2]["result"]["tools"]) == 6
    assert "TORCH_LOADED=False OPENVINO_LOADED=False" in stderr
