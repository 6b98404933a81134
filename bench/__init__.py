"""Benchmarks you can repeat. `python -m bench` compares mcp-vision with the reference way to run InternVL on
InternVL3-1B's architecture (random weights) and writes BENCHMARKS.md; `python -m bench.cold_start` measures
startup against a bare SDK server; `python -m bench.attention` times one decode step's attention."""
