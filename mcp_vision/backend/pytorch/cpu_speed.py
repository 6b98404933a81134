"""How fast this CPU multiplies matrices, in bf16 and in float32, timed here (a fraction of a second).

Two choices start from it: the precision the PyTorch engine runs in on a CPU (`cpu_dtype`), and the budget
planner's first guess of how long a call's vision pass and prefill take (`matmul_rate`, through
`Backend.compute_rate`). Both used to be fixed figures, right on one kind of CPU and wrong by an order of magnitude
on another: on an AMD EPYC with AVX2 only (no AVX-512 BF16, no AMX), a prefill-sized bf16 product ran at 3-6
GFLOP/s against 21-40 in float32 (2026-12-02), so bf16, the right choice on a Xeon with AMX, made every image
several times slower there. Which ISA paths PyTorch and oneDNN take for bf16 is theirs to decide and changes
between versions, so it is measured, not read from the CPU's flags.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# rows x inner x columns: an image tile's tokens through a layer of a 1-2B model (a prefill-sized product).
PROBE = (256, 1024, 1024)
# bf16 is chosen unless its products take this many times float32's time (float32 reads twice the bytes per
# weight, which costs decode steps about that much; below this ratio bf16 is the better trade).
SLOW_BF16 = 1.5


def matmul_rate(dtype: Any, *, window: float = 0.05, windows: int = 3) -> float:
    """FLOP/s of PROBE-sized products in `dtype` on torch's current threads: the best of `windows` windows of
    `window` seconds each (the best, because other work on the machine only ever slows a window down)."""
    import torch

    rows, inner, columns = PROBE
    x = torch.randn(rows, inner).to(dtype)
    w = torch.randn(columns, inner).to(dtype)
    best = 0.0
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)  # the first call builds the kernels
        for _ in range(windows):
            count, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < window:
                torch.nn.functional.linear(x, w)
                count += 1
            best = max(best, 2 * rows * inner * columns * count / elapsed)
    return best


_measured: dict[tuple[Any, int], float] = {}  # measured_rate's, by (dtype, torch's thread count)


def measured_rate(dtype: Any) -> float:
    """`matmul_rate(dtype)` on torch's current threads, measured once a process per dtype and thread count (the
    precision choice at load and the engine's compute_rate read the same figure)."""
    import torch

    key = (dtype, torch.get_num_threads())
    if key not in _measured:
        _measured[key] = matmul_rate(dtype)
    return _measured[key]


@functools.cache
def bf16_is_slow() -> bool:
    """Whether this CPU's bf16 products take more than SLOW_BF16 times float32's (measured once a process)."""
    import torch

    fp32, bf16 = measured_rate(torch.float32), measured_rate(torch.bfloat16)
    slow = fp32 > SLOW_BF16 * bf16
    log.info("CPU matrix products: float32 %.1f GFLOP/s, bf16 %.1f GFLOP/s%s", fp32 / 1e9, bf16 / 1e9,
             " (bf16 is slow here: float32 chosen)" if slow else "")
    return slow


def cpu_dtype() -> Any:
    """The precision a model runs fastest in on this CPU: bf16 where the CPU computes in it natively (AMX,
    AVX-512 BF16), float32 where bf16 is emulated and several times slower (twice the memory, but every image
    encodes and every prompt prefills faster)."""
    import torch

    return torch.float32 if bf16_is_slow() else torch.bfloat16


__all__ = ["PROBE", "SLOW_BF16", "bf16_is_slow", "cpu_dtype", "matmul_rate", "measured_rate"]
