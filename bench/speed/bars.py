"""The speed bars the `fast` implementations are held to, judged from one speed run's records.

Training tokens/s at d2l's sizes (B=32, T=35, V=28), float32, for each hidden size the run has:
- every framework's `fast` LSTM and GRU within 1.25x of its own `builtin`, or, where the step's
  products alone (the floor, measured beside the `fast` step) already take longer than that,
  within 1.1x of the floor;
- JAX's `fast` LSTM at least 0.8x the fastest built-in LSTM of any framework;
- PyTorch's `fast` GRU and RNN at least as fast as `nn.GRU` / `nn.RNN`.
Each ratio comes with the two timings' spreads (inter-quartile range over the median).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from bench.speed import records as rec, tables

BUILTIN_OVER_FAST = 1.25
FAST_OVER_FLOOR = 1.1
JAX_VS_FASTEST = 0.8
D2L_SIZE = (32, 35, 28)             # batch, steps, vocab


@dataclass(frozen=True)
class Bar:
    hidden: int
    what: str
    ratio: float
    bound: float
    upper: bool                     # True: the ratio must be at most `bound`
    spreads: Tuple[float, float]

    @property
    def met(self) -> bool:
        return self.ratio <= self.bound if self.upper else self.ratio >= self.bound

    def line(self) -> str:
        sign = "<=" if self.upper else ">="
        a, b = (f"{100 * s:.0f}%" for s in self.spreads)
        return (f"H={self.hidden}, {self.what}: {self.ratio:.2f} (needs {sign} {self.bound:g}: "
                f"{'met' if self.met else 'NOT met'}; spreads {a} / {b})")


def judged(case) -> bool:
    """The cases the bars speak of: float32 training at d2l's B, T, V."""
    return (case.mode == "train" and case.dtype == "float32"
            and (case.batch, case.steps, case.vocab) == D2L_SIZE)


def train_rates(records) -> Dict[Tuple[int, str, str, str], object]:
    """(hidden, backend, impl, cell) -> the float32 CPU/GPU training record at d2l's B, T, V."""
    return {(r.case.hidden, r.case.backend, r.case.impl, r.case.cell): r
            for r in tables.steps(records) if r.tokens_per_s and judged(r.case)}


def floors(records) -> Dict[Tuple[int, str, str], object]:
    """(hidden, backend, cell) -> the floor record measured beside that `fast` training step."""
    return {(r.case.hidden, r.case.backend, r.case.cell): r for r in records
            if getattr(r, "kind", "") == "floor" and r.status == rec.OK and r.timing
            and judged(r.case)}


def _seconds(r) -> float:
    return float(r.timing["median_s"])


def _spread(r) -> float:
    return float(r.timing.get("iqr_over_median", 0.0))


def _bar(hidden, what, num, den, bound, upper) -> Optional[Bar]:
    if num is None or den is None:
        return None
    return Bar(hidden, what, num.tokens_per_s / den.tokens_per_s, bound, upper,
               (_spread(num), _spread(den)))


def builtin_bar(hidden, be, cell, builtin, fast, floor) -> Optional[Bar]:
    """`fast` within 1.25x of `builtin`; where the floor alone is over that, within 1.1x of it."""
    if builtin is None or fast is None:
        return None
    if floor is not None and _seconds(floor) > BUILTIN_OVER_FAST * _seconds(builtin):
        over = _seconds(floor) / _seconds(builtin)
        return Bar(hidden, f"{be} fast {cell.upper()} / its floor (the products alone take "
                           f"{over:.2f}x the built-in's step)", _seconds(fast) / _seconds(floor),
                   FAST_OVER_FLOOR, True, (_spread(fast), _spread(floor)))
    return _bar(hidden, f"{be} builtin / fast {cell.upper()}", builtin, fast,
                BUILTIN_OVER_FAST, True)


def bars(records) -> List[Bar]:
    """Every bar the run has both timings for, by hidden size."""
    rates, floor, out = train_rates(records), floors(records), []
    for hidden in sorted({k[0] for k in rates}):
        get = lambda be, impl, cell: rates.get((hidden, be, impl, cell))
        for be in ("torch", "mxnet", "jax"):
            for cell in ("lstm", "gru"):
                out.append(builtin_bar(hidden, be, cell, get(be, "builtin", cell),
                                       get(be, "fast", cell), floor.get((hidden, be, cell))))
        builtins = [r for r in (get(be, "builtin", "lstm") for be in ("torch", "mxnet", "jax"))
                    if r is not None]
        if builtins:
            best = max(builtins, key=lambda r: r.tokens_per_s)
            out.append(_bar(hidden, f"JAX fast LSTM / fastest built-in LSTM ({best.case.backend})",
                            get("jax", "fast", "lstm"), best, JAX_VS_FASTEST, False))
        for cell, name in (("gru", "nn.GRU"), ("rnn", "nn.RNN")):
            out.append(_bar(hidden, f"torch fast / {name}", get("torch", "fast", cell),
                            get("torch", "builtin", cell), 1.0, False))
    return [b for b in out if b is not None]


def floor_table(records) -> str:
    """Markdown: per hidden size, framework and cell, the floor beside `fast` and `builtin`
    (median step ms), or '' when the run measured no floors."""
    rates, floor = train_rates(records), floors(records)
    rows = ["| H | framework | cell | floor: the products alone (kernels) | fast | builtin |",
            "|---|---|---|---|---|---|"]
    for (hidden, be, cell), f in sorted(floor.items()):
        ms = lambda r: f"{1e3 * _seconds(r):.1f} ms" if r is not None else "—"
        rows.append(f"| {hidden} | {be} | {cell} | {ms(f)} ({f.kernels}) | "
                    f"{ms(rates.get((hidden, be, 'fast', cell)))} | "
                    f"{ms(rates.get((hidden, be, 'builtin', cell)))} |")
    return "\n".join(rows) if floor else ""


def as_markdown(judged: List[Bar]) -> str:
    """One bullet per bar, or '' when there are none."""
    return "\n".join(f"- {b.line()}" for b in judged)


def bars_markdown(records) -> str:
    """The run's bars, one bullet each, or '' when the run holds none of the timings."""
    return as_markdown(bars(records))
