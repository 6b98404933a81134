"""`python -m bench.attention`: one decode step's attention on the CPU, transformers' sdpa against ours.

InternVL3-1B's language model shapes (14 query heads, 2 KV heads, head size 64), one query token against
a KV cache of --context tokens, for batches of 1 and 4; median milliseconds per layer call. This is the
measurement behind `mcp_vision/backend/attention.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from mcp_vision.backend.pytorch.attention import attention

    parser = argparse.ArgumentParser(prog="python -m bench.attention", description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=2000, help="cached tokens (default 2000)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)

    class Layer(torch.nn.Module):
        num_key_value_groups = 7
        is_causal = True

    layer = Layer().eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.context} cached tokens, bf16")
    print("| batch | sdpa (transformers) ms | ours ms | sdpa / ours | max abs difference |")
    print("|---|---|---|---|---|")
    for batch in (1, 4):
        g = torch.Generator().manual_seed(batch)
        query = torch.randn(batch, 14, 1, 64, generator=g).bfloat16()
        key = torch.randn(batch, 2, args.context, 64, generator=g).bfloat16()
        value = torch.randn(batch, 2, args.context, 64, generator=g).bfloat16()
        with torch.inference_mode():
            theirs = _median_ms(lambda: sdpa_attention_forward(layer, query, key, value, None), args.repeats)
            ours = _median_ms(lambda: attention(layer, query, key, value, None), args.repeats)
            diff = (attention(layer, query, key, value, None)[0].float()
                    - sdpa_attention_forward(layer, query, key, value, None)[0].float()).abs().max().item()
        print(f"| {batch} | {theirs:.2f} | {ours:.2f} | {theirs / ours:.1f}x | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
