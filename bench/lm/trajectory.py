"""`rnnbench trajectory`: the same training run, step by step, in every framework x impl.

The same seeded canonical parameters and the same batches go through 50 SGD steps (clip 1,
state carried); per-step losses are compared with PyTorch's scratch run. In float64 they must
agree to 1e-8 relative (the math is the same); in float32 the drift is reported.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, List

import numpy as np

from bench.core import records, status as S
from bench.lm.data import LMData, epoch_batches, load_corpus
from common.config import IMPLS, LMConfig, TrainConfig
from common.errors import BackendUnavailable, NotSupported
from common.params import init_lm_params
from common.registry import get_backend, is_available, no_framework_installed

NOT_RUN = S.SHORT[S.NOT_SUPPORTED]   # the cell of an implementation that did not run

FLOAT64_RTOL = 1e-8


def losses(backend: str, impl: str, cell: str, data: LMData, steps: int = 50,
           dtype: str = "float64", optimizer: str = "sgd", hidden: int = 16) -> np.ndarray:
    """Per-step training losses `(steps,)` from seeded params and a fixed batch sequence."""
    be = get_backend(backend)
    cfg = LMConfig(cell, impl, len(data.vocab), hidden, 1)
    tcfg = TrainConfig(optimizer=optimizer, lr=1.0 if optimizer == "sgd" else 0.01, clip=1.0,
                       batch_size=4, num_steps=8, dtype=dtype)
    model = be.build_lm(cfg, init_lm_params(cfg, seed=3, dtype=dtype, init="uniform"), dtype)
    trainer = be.make_trainer(model, tcfg.optimizer, tcfg.lr, tcfg.clip)
    batches = itertools.cycle(list(epoch_batches(data, tcfg, np.random.default_rng(0))))
    out, state = [], None
    for _ in range(steps):
        X, Y = next(batches)
        loss, state = trainer.step(X, Y, state)
        out.append(loss)
    return np.array(out)


def reference_backend(backends) -> str:
    """torch when installed, else the first installed backend asked for."""
    for name in ("torch", *backends):
        if is_available(name):
            return name
    raise no_framework_installed()


def drift_table(backends, cells=("rnn", "lstm", "gru"), dtypes=("float64", "float32"),
                steps: int = 50) -> List[Dict]:
    """Max relative per-step loss difference from torch/scratch (else the first installed
    backend's scratch), for every backend x impl; a backend not installed is a row saying so."""
    data = load_corpus("human_numbers", token="char", max_tokens=3000)
    rows, reference = [], reference_backend(backends)
    for dtype, cell in itertools.product(dtypes, cells):
        ref = losses(reference, "scratch", cell, data, steps, dtype)
        for backend, impl in itertools.product(backends, IMPLS):
            try:
                got = losses(backend, impl, cell, data, steps, dtype)
            except (NotSupported, BackendUnavailable) as exc:
                why = S.NOT_INSTALLED if isinstance(exc, BackendUnavailable) else S.NOT_SUPPORTED
                status = S.SHORT[why]
                rows.append(dict(dtype=dtype, cell=cell, impl=f"{backend}/{impl}", error=str(exc),
                                 status=status))
                continue
            rel = float(np.max(np.abs(got - ref) / np.abs(ref)))
            rows.append(dict(dtype=dtype, cell=cell, impl=f"{backend}/{impl}", max_rel=rel,
                             first=float(got[0]), last=float(got[-1])))
    return rows


def compact_table(rows: List[Dict]) -> str:
    """Markdown grid: one row per impl, one column per (dtype, cell), cells = max rel diff."""
    cols = list(dict.fromkeys((r["dtype"], r["cell"]) for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    by = {(r["impl"], r["dtype"], r["cell"]): r for r in rows}
    out = ["| impl | " + " | ".join(f"{c} {d}" for d, c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for impl in impls:
        cells = [by[(impl, d, c)] for d, c in cols]
        out.append(f"| {impl} | " + " | ".join(
            r.get("status", NOT_RUN) if "error" in r else f"{r['max_rel']:.0e}" for r in cells) + " |")
    return "\n".join(out)


def write_record(out, backends, steps: int, rows: List[Dict]) -> None:
    """`trajectory.json` (the rows, with the reference run) in a new directory `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records.write_json(out / "trajectory.json",
                       {"kind": "trajectory", "steps": steps, "backends": list(backends),
                        "reference": f"{reference_backend(backends)}/scratch", "rows": rows})


def main(backends, steps: int = 50, out=None) -> int:
    rows = drift_table(backends, steps=steps)
    if out is not None:
        write_record(out, backends, steps, rows)
    print(f"max relative difference of {steps} per-step losses from "
          f"{reference_backend(backends)}/scratch")
    print("| dtype | cell | impl | max rel | loss at step 1 -> last |")
    print("|---|---|---|---|---|")
    failed = False
    for r in rows:
        if "error" in r:
            what = {S.SHORT[S.NOT_INSTALLED]: S.NOT_INSTALLED_HERE}.get(r.get("status"),
                                                                        S.NOT_SUPPORTED_HERE)
            print(f"| {r['dtype']} | {r['cell']} | {r['impl']} | {what}: {r['error']} | |")
            continue
        bad = r["dtype"] == "float64" and r["max_rel"] > FLOAT64_RTOL
        failed |= bad
        print(f"| {r['dtype']} | {r['cell']} | {r['impl']} | {r['max_rel']:.1e}{' FAIL' if bad else ''}"
              f" | {r['first']:.4f} -> {r['last']:.4f} |")
    print("\n" + compact_table(rows))
    return 1 if failed else 0
