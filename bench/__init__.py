"""Benchmarks you can repeat. `python -m bench.cold_start` measures startup against a bare SDK server."""
