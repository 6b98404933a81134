"""Fair queueing under load: 3 principals x 8 calls at once through the real server over streamable HTTP.

`python -m bench.fairness [--runs 3] [--principals 3] [--calls 8] [--concurrency 2] [--delay 0.05]` starts the
stub OpenAI-compatible engine (tests/support/remote.py: each answer streams 4 pieces, `--delay` seconds apart) and
the real command in front of it (`--transport streamable-http`, a tokens file naming one token per principal,
MCP_VISION_REMOTE_CONCURRENCY=`--concurrency`, the default queue: 8 + concurrency - 1 places, 3 per caller).
Every principal, with its own token and the SDK's client, connects, then (once all have) sends all its calls at
once; a call refused as busy waits the seconds its refusal names and tries again. Reported: each principal's
completed calls while all were still competing (until the first one had all its calls answered), its share of
those, the smallest share over the largest, every call's outcome (nothing lost), and the refusals (each an
isError naming when to retry); then the same over all runs together (a single run's split moves by a call either
way: two calls run at once, so the one that ends the window races another). Prints Markdown; writes
.bench-cache/FAIRNESS.md and fairness.json. The engine is a stub: the point is the queue's arithmetic, not the
model's speed.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"
RETRY = re.compile(r"retry in about (\d+(?:\.\d+)?) s")


async def drive(resource: str, tokens: dict[str, str], calls: int, image_uri: str) -> dict:
    """Each principal sends `calls` describe_image calls at once, retrying refusals after the time they name."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    started = time.monotonic()
    connected, go = [0], anyio.Event()  # every principal connects first, then all send at once
    completed: list[tuple[float, str]] = []  # (seconds from the start, principal), in order of completion
    refusals: list[tuple[str, str]] = []  # (principal, text)
    failures: list[tuple[str, str]] = []  # anything else: an error that is not a refusal

    async def principal(name: str, token: str) -> None:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(resource, http_client=http)) as client:

            async def one(index: int) -> None:
                while True:
                    result = await client.call_tool(
                        "describe_image", {"image": image_uri, "question": f"call {index}", "max_new_tokens": 4}
                    )
                    text = result.content[0].text if result.content else ""
                    if not result.is_error:
                        completed.append((time.monotonic() - started, name))
                        return
                    wait = RETRY.search(text)
                    if wait is None or "busy" not in text:
                        failures.append((name, text))
                        return
                    refusals.append((name, text))
                    await anyio.sleep(float(wait.group(1)))

            connected[0] += 1
            if connected[0] == len(tokens):
                go.set()
            await go.wait()
            async with anyio.create_task_group() as group:
                for index in range(calls):
                    group.start_soon(one, index)

    async with anyio.create_task_group() as group:
        for name, token in tokens.items():
            group.start_soon(principal, name, token)
    return {"completed": completed, "refusals": refusals, "failures": failures,
            "seconds": round(time.monotonic() - started, 3)}


def summarise(run: dict, names: list[str], calls: int) -> dict:
    """The shares while every principal was still competing: up to the completion that finished the first
    principal's calls."""
    counts = dict.fromkeys(names, 0)
    window = 0
    for _, name in run["completed"]:
        counts[name] += 1
        window += 1
        if counts[name] == calls:
            break
    contended = dict(counts)
    totals = dict.fromkeys(names, 0)
    for _, name in run["completed"]:
        totals[name] += 1
    refused = dict.fromkeys(names, 0)
    for name, _ in run["refusals"]:
        refused[name] += 1
    shares = {name: contended[name] / window for name in names}
    return {
        "window": window, "contended": contended, "shares": {n: round(s, 3) for n, s in shares.items()},
        "fairness": round(min(contended.values()) / max(contended.values()), 3),
        "totals": totals, "refused": refused, "failures": len(run["failures"]), "seconds": run["seconds"],
        "refusals_clean": all(RETRY.search(text) and "busy" in text for _, text in run["refusals"]),
    }


def run_load(principals: int = 3, calls: int = 8, concurrency: int = 2, delay: float = 0.05) -> dict:
    """The whole measurement: engine, server and clients, torn down afterwards."""
    import anyio

    from tests import hostile, servers
    from tests.support.remote import MODEL, FakeEngine, Reply

    work = Path(tempfile.mkdtemp(prefix="mcp-vision-fairness-"))
    names = [f"p{i + 1}" for i in range(principals)]
    tokens = {name: f"{name}-" + base64.urlsafe_b64encode(name.encode() * 12).decode() for name in names}
    token_file = work / "tokens"
    token_file.write_text("".join(f"{name}:{token}\n" for name, token in tokens.items()))
    token_file.chmod(0o600)
    engine = FakeEngine()
    engine.server.handle_error = lambda *_: None  # a connection the server's client closed is no finding here
    engine.replies.extend(Reply(delay=delay) for _ in range(principals * calls * 4))
    port = servers.free_port()
    env = servers.server_env(
        work / "no-model", work, MCP_VISION_BACKEND="openai", MCP_VISION_BASE_URL=engine.url,
        MCP_VISION_REMOTE_MODEL=MODEL, MCP_VISION_AUTH_TOKENS_FILE=str(token_file),
        MCP_VISION_REMOTE_CONCURRENCY=str(concurrency), MCP_VISION_PREVIEWS="none",
    )
    image = "data:image/png;base64," + base64.b64encode(hostile.png()).decode()
    try:
        with servers.http_server(env, work, work / "server.log", port=port):
            run = anyio.run(drive, f"http://127.0.0.1:{port}/mcp", tokens, calls, image)
    finally:
        engine.close()
    summary = summarise(run, names, calls)
    summary.update(principals=principals, calls=calls, concurrency=concurrency, delay=delay,
                   engine_requests=len(engine.chats), refusal_example=run["refusals"][0][1] if run["refusals"] else None)
    return summary


def pooled(runs: list[dict]) -> dict:
    """The runs' contended completions added up, and their shares."""
    names = list(runs[0]["contended"])
    counts = {name: sum(run["contended"][name] for run in runs) for name in names}
    total = sum(counts.values())
    return {"contended": counts, "shares": {n: round(c / total, 3) for n, c in counts.items()},
            "fairness": round(min(counts.values()) / max(counts.values()), 3),
            "worst_run": min(run["fairness"] for run in runs), "runs": len(runs)}


def markdown(summary: dict) -> str:
    lines = [
        f"{summary['principals']} principals x {summary['calls']} calls at once, remote concurrency "
        f"{summary['concurrency']}, {summary['seconds']} s in all; shares counted over the first "
        f"{summary['window']} completions (until one principal had all its calls answered).",
        "",
        "| principal | completed while all competed | share | completed in all | refusals (retried) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in summary["contended"]:
        lines.append(f"| {name} | {summary['contended'][name]} | {summary['shares'][name]:.3f} | "
                     f"{summary['totals'][name]} | {summary['refused'][name]} |")
    lines += ["", f"Smallest share / largest: {summary['fairness']:.3f}; other errors: {summary['failures']}; "
              f"every refusal an isError naming when to retry: {summary['refusals_clean']}; engine requests: "
              f"{summary['engine_requests']}."]
    if summary["refusal_example"]:
        lines.append(f"A refusal: \"{summary['refusal_example'].removeprefix('Error executing tool describe_image: ')}\"")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs, each with a fresh server and engine")
    parser.add_argument("--principals", type=int, default=3)
    parser.add_argument("--calls", type=int, default=8, help="calls each principal sends at once")
    parser.add_argument("--concurrency", type=int, default=2, help="MCP_VISION_REMOTE_CONCURRENCY")
    parser.add_argument("--delay", type=float, default=0.05, help="the stub engine's seconds between pieces")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runs = [run_load(args.principals, args.calls, args.concurrency, args.delay) for _ in range(args.runs)]
    together = pooled(runs)
    text = "\n".join(f"### Run {index}\n\n{markdown(run)}" for index, run in enumerate(runs, start=1))
    text += (f"\n### All {together['runs']} runs\n\nCompleted while all competed: "
             + ", ".join(f"{n} {c} ({together['shares'][n]:.3f})" for n, c in together["contended"].items())
             + f"; smallest share / largest {together['fairness']:.3f} (worst single run {together['worst_run']:.3f}); "
             f"every call answered in every run: {all(set(r['totals'].values()) == {args.calls} for r in runs)}.\n")
    CACHE.mkdir(exist_ok=True)
    (CACHE / "FAIRNESS.md").write_text(text)
    (CACHE / "fairness.json").write_text(json.dumps({"runs": runs, "pooled": together}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
