"""One framework's rungs on one device, in its own process:
`python -m bench.explain.worker FRAMEWORK DEVICE CONFIG`.

Importing MXNet drops PyTorch to one thread and every framework sizes its thread pools when it
is imported (docs/performance.md), so bench/explain/runner.py starts one fresh interpreter per framework
with the thread variables set, and this process pins itself to that many CPUs before the
framework is imported. It prints one JSON object per line: `{"event": "start", ...}` when a
rung begins and `{"event": "record", ...}` with its measurement (or its error) when it ends;
a device the framework cannot see gives records with status "unavailable". After the rungs
of each hidden size, `{"event": "floor", ...}`: the products alone (common.rungs.PRODUCTS),
timed the same way, the least time any hand-written rung of this framework can take.

Per rung and hidden size: a fresh model is timed first (so the first call carries its compile
cost), its kernels counted, then another fresh model is checked against the built-in's loss,
logits and canonical gradients at the measured size; and once per rung, in float64 on a small
case when the framework allows (`parity64`).
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import traceback

import numpy as np

from bench.core import status as S
from bench.core.timing import measure
from common.config import LMConfig
from common.errors import RnnbenchError
from common.params import init_lm_params
from common.rungs import ExplainConfig

SMALL = {"hidden": 7, "batch": 3, "steps": 6}  # the float64 parity case


def pin_cpus(threads: int) -> int:
    """Restrict this process to its first `threads` allowed CPUs; -> the CPUs it may use."""
    if not hasattr(os, "sched_getaffinity"):
        return os.cpu_count() or threads
    allowed = sorted(os.sched_getaffinity(0))
    if threads < len(allowed):
        os.sched_setaffinity(0, allowed[:threads])
    return len(os.sched_getaffinity(0))


def batch(cfg: ExplainConfig, seed: int, batch_size: int, steps: int):
    """Seeded token ids and next-token targets `(B, T)`, uniform over the vocabulary."""
    rng = np.random.default_rng([seed, 7])
    return (rng.integers(0, cfg.vocab, (batch_size, steps)),
            rng.integers(0, cfg.vocab, (batch_size, steps)))


def max_error(got, want) -> float:
    """Largest absolute difference over loss, logits and every canonical gradient."""
    (loss, logits, grads), (ref_loss, ref_logits, ref_grads) = got, want
    if set(grads) != set(ref_grads):
        raise ValueError(f"gradient keys differ: {sorted(set(grads) ^ set(ref_grads))}")
    errors = [abs(loss - ref_loss), float(np.max(np.abs(logits - ref_logits)))]
    errors += [float(np.max(np.abs(grads[k] - ref_grads[k]))) for k in ref_grads]
    return max(errors)


def parity(R, rung: str, lm: LMConfig, params, ids, targets, dtype: str, device: str,
           reference=None) -> float:
    """Max error of `rung` against the built-in on the same canonical parameters."""
    build = lambda name: R.build(name, lm, params, dtype, device, steps=ids.shape[1])
    if reference is None:
        reference = R.loss_and_grads(build("builtin"), ids, targets)
    return max_error(R.loss_and_grads(build(rung), ids, targets), reference)


def parity64(R, rung: str, cfg: ExplainConfig, device: str):
    """`(error, note)` of `rung` against the built-in in float64 on the small case."""
    lm = LMConfig("lstm", "scratch", cfg.vocab, SMALL["hidden"])
    params = init_lm_params(lm, seed=cfg.seed, dtype="float64", init="uniform")
    ids, targets = batch(cfg, cfg.seed, SMALL["batch"], SMALL["steps"])
    try:
        return parity(R, rung, lm, params, ids, targets, "float64", device), ""
    except Exception as exc:  # a framework without float64 says so in the record
        return None, f"float64: {type(exc).__name__}: {exc}"


def warm_up(R, cfg: ExplainConfig, device: str) -> None:
    """Two steps of the d2l and built-in rungs on the small case, so that what a process pays
    once (lazy imports, library start-up) is not charged to the first rung's compile time."""
    lm = LMConfig("lstm", "scratch", cfg.vocab, SMALL["hidden"])
    params = init_lm_params(lm, seed=cfg.seed, dtype=cfg.dtype)
    ids, targets = batch(cfg, cfg.seed, SMALL["batch"], SMALL["steps"])
    for rung in ("d2l", "builtin"):
        model = R.build(rung, lm, params, cfg.dtype, device, steps=SMALL["steps"])
        step = R.make_step(model, ids, targets, cfg.lr, cfg.clip)
        for _ in range(2):
            R.sync(model)(step())


def measure_rung(R, rung: str, lm: LMConfig, params, ids, targets, cfg: ExplainConfig,
                 device: str, reference) -> dict:
    """Time, count and check one rung at one size -> the measured fields of a record."""
    model = R.build(rung, lm, params, cfg.dtype, device, steps=cfg.steps)
    step = R.make_step(model, ids, targets, cfg.lr, cfg.clip)
    timing = measure(step, R.sync(model), warmup=cfg.warmup, min_repeats=cfg.min_repeats,
                     budget_s=cfg.budget_s)
    ops, source = R.count_ops(model, step)
    error = parity(R, rung, lm, params, ids, targets, cfg.dtype, device, reference)
    return {"timing": timing.summary(), "ops": ops, "ops_source": source,
            "parity_error": error, "code_path": model.code_path}


def measure_floor(R, lm: LMConfig, cfg: ExplainConfig, device: str) -> dict:
    """The products alone (common.rungs.PRODUCTS), timed as a rung is -> the floor's fields."""
    try:
        step, sync, kernels = R.products_step(lm, cfg.batch, cfg.steps, cfg.dtype, device)
        timing = measure(step, sync, warmup=cfg.warmup, min_repeats=cfg.min_repeats,
                         budget_s=cfg.budget_s)
        return {"timing": timing.summary(), "kernels": kernels, "status": S.RAN, "error": None}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {"status": S.RUN_ERROR, "error": f"{type(exc).__name__}: {exc}"}


def run(framework: str, device: str, cfg: ExplainConfig, emit) -> None:
    """Every rung of `framework` that `cfg` asks for, at every hidden size; `emit(dict)`."""
    cpus = pin_cpus(cfg.threads)
    from common.registry import get_module
    R = get_module(framework, "rungs")
    R.set_threads(cfg.threads)
    rungs = [r for r in R.RUNGS if r in cfg.rungs]
    try:
        info = {**R.runtime_info(device), "cpus": cpus}
        info["device_name"] = info.pop("device")
    except RnnbenchError as exc:  # this framework cannot see the device
        for hidden, rung in itertools.product(cfg.hidden_sizes, rungs):
            emit({"event": "record", "framework": framework, "rung": rung, "hidden": hidden,
                  "device": device, "status": S.DEVICE_UNSEEN, "error": str(exc)})
        return
    warm_up(R, cfg, device)
    checks = {r: parity64(R, r, cfg, device) if cfg.parity64 else (None, "not checked")
              for r in rungs}
    for hidden in cfg.hidden_sizes:
        lm = LMConfig("lstm", "scratch", cfg.vocab, hidden)
        params = init_lm_params(lm, seed=cfg.seed, dtype=cfg.dtype)  # d2l's N(0, 0.01^2)
        ids, targets = batch(cfg, cfg.seed, cfg.batch, cfg.steps)
        reference = R.loss_and_grads(R.build("builtin", lm, params, cfg.dtype, device,
                                             steps=cfg.steps), ids, targets)
        for rung in rungs:
            head = {"framework": framework, "rung": rung, "hidden": hidden, "device": device,
                    **info}
            emit({"event": "start", **head})
            try:
                result = measure_rung(R, rung, lm, params, ids, targets, cfg, device, reference)
                result.update(status=S.RAN, error=None)
            except Exception as exc:
                result = {"status": S.RUN_ERROR, "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc(file=sys.stderr)
            f64, note = checks[rung]
            emit({"event": "record", **head, **result, "parity64_error": f64,
                  "parity64_note": note})
        emit({"event": "floor", "framework": framework, "hidden": hidden, "device": device,
              **measure_floor(R, lm, cfg, device)})


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
    framework, device, config = (sys.argv[1:] if argv is None else argv)[:3]
    fields = json.loads(config)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    run(framework, device, ExplainConfig(**fields), _emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
