"""Fair queueing under load, through the real server over streamable HTTP: 3 principals (file tokens) x 8 calls
at once against the stub OpenAI-compatible engine (bench/fairness.py drives it). Every call is answered or, while
its caller is over its share, refused as a clean isError naming when to retry, and answered on retry; no principal
is starved while all compete. The shares' numbers (within 25%) are measured by `python -m bench.fairness` and kept
in BENCHMARKS.md: a run's exact split is timing, which tests never assert."""

from __future__ import annotations

from bench.fairness import run_load


def test_three_principals_by_eight_calls_share_the_queue():
    summary = run_load(principals=3, calls=8, concurrency=2, delay=0.05)
    assert summary["failures"] == 0  # every call answered or refused as busy, nothing else
    assert summary["totals"] == {"p1": 8, "p2": 8, "p3": 8}  # nothing lost: every call answered in the end
    assert summary["engine_requests"] == 24  # a refused call never reached the engine
    assert summary["refusals_clean"]  # each refusal: isError, "busy", "retry in about N s"
    assert sum(summary["refused"].values()) > 0  # 24 calls at once against 3 places each: the shares were enforced
    # No principal starved while all competed: each got answers before the first had all of its own.
    assert min(summary["contended"].values()) >= 3, summary
