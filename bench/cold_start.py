"""Cold start: time from spawning the server to the `tools/list` answer over stdio, for mcp-vision and
for a bare MCP SDK server with one trivial tool, in the same run. Prints medians and the ratio.

    python -m bench.cold_start [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE_SERVER = textwrap.dedent(
    """
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("bare")

    @mcp.tool()
    def echo(text: str) -> str:
        return text

    mcp.run()
    """
)

REQUESTS = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]


def time_to_tools_list(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin and proc.stdout
    for request in REQUESTS:
        proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{argv} exited before answering tools/list")
        if json.loads(line).get("id") == 2:
            elapsed = time.perf_counter() - started
            break
    proc.stdin.close()
    proc.wait(timeout=30)
    return elapsed


def measure(runs: int) -> dict[str, list[float]]:
    """Seconds to `tools/list` for mcp-vision and a bare SDK server, `runs` times each, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_server.py"
        bare.write_text(BARE_SERVER)
        commands = {"bare SDK server": [sys.executable, str(bare)], "mcp-vision": [sys.executable, "-m", "mcp_vision"]}
        times: dict[str, list[float]] = {name: [] for name in commands}
        time_to_tools_list(commands["mcp-vision"])  # warm the file cache for both
        time_to_tools_list(commands["bare SDK server"])
        for _ in range(runs):  # interleaved, so machine noise hits both alike
            for name, argv in commands.items():
                times[name].append(time_to_tools_list(argv))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times = measure(args.runs)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:16s} median {value:.3f} s  (min {min(times[name]):.3f}, max {max(times[name]):.3f}, n={args.runs})")
    print(f"ratio mcp-vision / bare: {medians['mcp-vision'] / medians['bare SDK server']:.2f}")


if __name__ == "__main__":
    main()
