"""Honest timing primitives shared by `rnnbench speed` and `rnnbench explain`.

A timed call is `fn()` followed by `sync()` (the framework's barrier: `torch.cuda.synchronize`,
`mx.nd.waitall`, `jax.block_until_ready` on what `fn` returned). The first call is timed on its
own as the compile / trace / hybridize cost; then `warmup` calls are discarded; then calls are
repeated until both `min_repeats` and `budget_s` are reached (or `max_repeats`), and the median
and spread of the per-call times are reported. Nothing here imports a framework.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional


@dataclass
class Timing:
    """Seconds per call: `first` (compile and first run), then the steady-state sample."""

    first: float
    times: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """Inter-quartile range over the median (0 for fewer than 4 samples)."""
        if len(self.times) < 4:
            return 0.0
        q = statistics.quantiles(self.times, n=4)
        return (q[2] - q[0]) / self.median

    @property
    def low(self) -> float:
        return min(self.times)

    @property
    def high(self) -> float:
        return max(self.times)

    @property
    def compile_seconds(self) -> float:
        """First-call time beyond a steady call: the trace/compile/hybridize/allocation cost."""
        return max(self.first - self.median, 0.0)

    def summary(self) -> dict:
        return {"median_s": self.median, "min_s": self.low, "max_s": self.high,
                "iqr_over_median": self.spread, "repeats": len(self.times),
                "first_call_s": self.first, "compile_s": self.compile_seconds}


def _noop(_=None):
    return None


def measure(fn: Callable[[], object], sync: Optional[Callable[[object], object]] = None,
            warmup: int = 3, min_repeats: int = 5, budget_s: float = 2.0,
            max_repeats: int = 1000, clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time `fn` honestly: every timed region ends with `sync(result)`. See the module doc."""
    sync = sync or _noop
    start = clock()
    sync(fn())
    timing = Timing(first=clock() - start)
    for _ in range(warmup):
        sync(fn())
    spent = 0.0
    while len(timing.times) < max_repeats and (len(timing.times) < min_repeats or spent < budget_s):
        start = clock()
        sync(fn())
        elapsed = clock() - start
        timing.times.append(elapsed)
        spent += elapsed
    return timing
