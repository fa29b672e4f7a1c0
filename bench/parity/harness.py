"""The parity harness: the same canonical weights and inputs through every implementation.

For each case (cell and GRU variant, layers, direction, dtype) every available
(backend, impl) runs a forward pass from a zero and a non-zero initial state and a VJP; every
pair is compared quantity by quantity against `bench.parity.tolerances`. A `NotSupported` raised by an
adapter is recorded and shown, never skipped. For the `reset_before` GRU, each framework's
built-in (which only computes `reset_after`) is also run on the same weights and its distance
is recorded as a different function, not a failure.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np

from bench.core import status as S
from bench.parity.tolerances import GROUPS, tolerance
from common.backend import flatten_state, random_state
from common.config import IMPLS, LayerSpec
from common.errors import BackendUnavailable, DeviceUnavailable, NotSupported, RnnbenchError
from common.params import cast_params, init_params
from common.registry import backend_names, get_backend

CELL_VARIANTS = (("rnn", "reset_after"), ("lstm", "reset_after"),
                 ("gru", "reset_after"), ("gru", "reset_before"))
RELU = ("rnn", "reset_after", "relu")  # the RNN with a ReLU in place of tanh
NOTE_SEP = " || "   # joins the reasons of both sides in a record's note
SIZES = {"T": 6, "B": 3, "I": 5, "H": 7}   # distinct sizes so a transposed weight cannot fit


@dataclass(frozen=True)
class Case:
    cell: str
    variant: str
    layers: int
    bidirectional: bool
    dtype: str
    activation: str = "tanh"

    def spec(self, variant: Optional[str] = None) -> LayerSpec:
        return LayerSpec(self.cell, SIZES["I"], SIZES["H"], self.layers, self.bidirectional,
                         variant or self.variant, self.activation)

    @property
    def cell_label(self) -> str:
        if self.activation != "tanh":
            return f"{self.cell}[{self.activation}]"
        return f"gru[{self.variant}]" if self.cell == "gru" else self.cell

    @property
    def label(self) -> str:
        return f"{self.cell_label} L{self.layers} {'bi' if self.bidirectional else 'uni'} {self.dtype}"


def default_cases(quick: bool = False, dtypes=("float64", "float32")) -> List[Case]:
    """Every combination, the ReLU RNN included; `quick` keeps (1 layer, uni) and (2 layers, bi)."""
    shapes = [(1, False), (2, True)] if quick else list(itertools.product((1, 2), (False, True)))
    kinds = [(c, v, "tanh") for c, v in CELL_VARIANTS] + [RELU]
    return [Case(c, v, n, bi, dt, act) for dt in dtypes for (c, v, act) in kinds
            for n, bi in shapes]


@dataclass
class ImplResult:
    """What one implementation computed for one case, flattened into named arrays."""
    label: str
    status: str             # an attempt status of `bench.core.status`: RAN, RUN_ERROR, ...
    message: str = ""
    arrays: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass
class PairRecord:
    """The comparison of two implementations on one case."""
    cell: str
    variant: str
    layers: int
    bidirectional: bool
    dtype: str
    device: str
    a: str
    b: str
    # a verdict of `bench.core.status`: PASS | FAIL | MEASURED | DIFFERENT FUNCTION | a blocking one
    status: str
    errors: Dict[str, Dict[str, float]] = field(default_factory=dict)
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    note: str = ""
    activation: str = "tanh"
    # "pair": two implementations of the same function (the matrices); "distance": d2l's
    # reset_before GRU against a built-in's reset_after on the same weights (reported apart)
    comparison: str = "pair"



def case_inputs(case: Case, seed: int = 0):
    """(params, X, state, G, G_state) in the case's dtype; independent of the GRU variant."""
    spec = case.spec()
    params = cast_params(init_params(spec, seed=seed), case.dtype)
    rng = np.random.default_rng([seed, case.layers, int(case.bidirectional)])
    X = rng.normal(size=(SIZES["T"], SIZES["B"], SIZES["I"])).astype(case.dtype)
    state = random_state(spec, SIZES["B"], rng, dtype=case.dtype)
    G = rng.normal(size=(SIZES["T"], SIZES["B"], SIZES["H"] * spec.num_directions)).astype(case.dtype)
    G_state = random_state(spec, SIZES["B"], rng, dtype=case.dtype, scale=1.0)
    return params, X, state, G, G_state


def _flatten(prefix: str, state) -> Dict[str, np.ndarray]:
    return {f"{prefix}{i}": a for i, a in enumerate(flatten_state(state))}


def run_impl(backend: str, impl: str, case: Case, inputs, device: str = "cpu",
             variant: Optional[str] = None) -> ImplResult:
    """Run one implementation on a case; NotSupported and other errors become statuses."""
    label = f"{backend}/{impl}" + (f"[{variant}]" if variant else "")
    return attempt(label, lambda: _layer_arrays(backend, impl, case, inputs, device, variant))


def attempt(label: str, compute) -> ImplResult:
    """`compute()` -> its named arrays as an "ok" result, or the status its exception means."""
    try:
        arrays = compute()
    except NotSupported as exc:
        return ImplResult(label, S.NOT_SUPPORTED_HERE, str(exc))
    except BackendUnavailable as exc:
        return ImplResult(label, S.NOT_INSTALLED_HERE, str(exc))
    except DeviceUnavailable as exc:
        return ImplResult(label, S.NO_DEVICE_HERE, str(exc))
    except (RnnbenchError, RuntimeError, ValueError, TypeError) as exc:
        return ImplResult(label, S.RUN_ERROR, f"{type(exc).__name__}: {exc}")
    return ImplResult(label, S.RAN, arrays={k: np.asarray(v) for k, v in arrays.items()})


def _layer_arrays(backend, impl, case, inputs, device, variant) -> Dict[str, np.ndarray]:
    params, X, state, G, G_state = inputs
    be = get_backend(backend)
    layer = be.build_layer(case.spec(variant), impl, params, case.dtype, device)
    Y0, S0 = be.forward(layer, X, None)
    res = be.vjp(layer, X, state, G, G_state)
    arrays = {"outputs.zero": Y0, "outputs.state": res.outputs}
    arrays.update(_flatten("states.zero.", S0))
    arrays.update(_flatten("states.state.", res.states))
    arrays.update({f"grad_params.{k}": v for k, v in res.grads.items()})
    arrays["grad_inputs.X"] = res.dX
    arrays.update(_flatten("grad_state.", res.dstate))
    return arrays


def group_errors(a: ImplResult, b: ImplResult) -> Dict[str, Dict[str, float]]:
    """Per quantity group: max |a-b|, max |b| and the normwise relative error."""
    if set(a.arrays) != set(b.arrays):
        raise ValueError(f"{a.label} and {b.label} returned different quantities: "
                         f"{sorted(set(a.arrays) ^ set(b.arrays))}")
    out = {}
    for group in GROUPS:
        keys = [k for k in a.arrays if k.split(".")[0] == group]
        if not keys:
            continue
        diff = max(float(np.max(np.abs(a.arrays[k].astype(np.float64) - b.arrays[k]), initial=0))
                   for k in keys)
        scale = max(float(np.max(np.abs(b.arrays[k]), initial=0)) for k in keys)
        out[group] = {"max_abs": diff, "scale": scale, "max_rel": diff / scale if scale else 0.0}
    return out


def judge(errors, dtype: str) -> bool:
    """True when every group is within its tolerance."""
    return all(e["max_abs"] <= tolerance(dtype, g)[0] + tolerance(dtype, g)[1] * e["scale"]
               for g, e in errors.items())


def compare(case: Case, a: ImplResult, b: ImplResult, device: str,
            different_function: bool = False, judged: bool = True) -> PairRecord:
    """A PairRecord for two results of the same case."""
    rec = PairRecord(case.cell, case.variant, case.layers, case.bidirectional, case.dtype,
                     device, a.label, b.label, S.PASS, activation=case.activation,
                     comparison="distance" if different_function else "pair")
    bad = [r for r in (a, b) if r.status != S.RAN]
    if bad:
        statuses = {r.status for r in bad}
        rec.status = next(status for kind, status in S.BLOCKING if kind in statuses)
        rec.note = NOTE_SEP.join(f"{r.label}: {r.message}" for r in bad)
        return rec
    rec.errors = group_errors(a, b)
    rec.max_abs = max(e["max_abs"] for e in rec.errors.values())
    rec.max_rel = max(e["max_rel"] for e in rec.errors.values())
    if different_function:
        rec.status = S.DIFFERENT_FUNCTION
        rec.note = "reset_before vs the built-in's reset_after on the same weights (expected to differ)"
    elif not judged:
        rec.status = S.MEASURED
        rec.note = "TF32 on: the error TF32 adds, not judged against the float32 tolerance"
    elif not judge(rec.errors, case.dtype):
        rec.status = S.FAIL
        worst = max(rec.errors, key=lambda g: rec.errors[g]["max_abs"])
        rec.note = f"worst group {worst}: max abs {rec.errors[worst]['max_abs']:.3g}"
    return rec


def case_records(case: Case, backends, device: str, judged: bool = True) -> List[PairRecord]:
    """Run every implementation on a case and compare every pair (`judged`: against the
    tolerances; not for a TF32 run, whose errors are shown as measured)."""
    inputs = case_inputs(case)
    results = [run_impl(be, impl, case, inputs, device) for be in backends for impl in IMPLS]
    records = [compare(case, a, b, device, judged=judged)
               for a, b in itertools.combinations(results, 2)]
    if case.cell == "gru" and case.variant == "reset_before":
        scratch = [r for r in results if r.label.endswith("/scratch")]
        for be, own in zip(backends, scratch):
            builtin = run_impl(be, "builtin", case, inputs, device, variant="reset_after")
            records.append(compare(case, own, builtin, device, different_function=True))
    return records


@dataclass
class ParityRun:
    """All records of one `rnnbench parity` run, with the environment they came from."""
    records: List[PairRecord]
    environment: dict
    tolerances: dict

    @property
    def failed(self) -> List[PairRecord]:
        return [r for r in self.records if r.status in S.FAILED]

    def to_json(self) -> dict:
        return {"kind": "parity", "environment": self.environment,
                "tolerances": self.tolerances, "records": [asdict(r) for r in self.records]}


def run(cases: List[Case], backends=None, device: str = "cpu", progress=None) -> ParityRun:
    """Run every case; `progress(case)` is called after each one. In a process asked for TF32
    (`common.precision`) the pairs are measured, not judged."""
    from bench.core.probe import versions
    from bench.parity.tolerances import TOLERANCES
    from common.precision import tf32_allowed
    backends, tf32 = list(backends or backend_names()), tf32_allowed()
    records = []
    for case in cases:
        records.extend(case_records(case, backends, device, judged=not tf32))
        if progress:
            progress(case)
    env = {"device": device, "backends": backends, "sizes": dict(SIZES), "tf32": tf32,
           "versions": {b: versions(b) for b in backends}}
    return ParityRun(records, env, TOLERANCES)
