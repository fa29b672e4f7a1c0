"""Exact conversion between canonical parameters and the layout of torch's `nn.RNN/LSTM/GRU`.

Native layout (per layer `k`; the backward direction adds the suffix `_reverse`):
- `weight_ih_l{k}`: `(G*H, in)`, the gates' input weights stacked along rows, each block the
  transpose of the canonical `W_x{g}: (in, H)`;
- `weight_hh_l{k}`: `(G*H, H)`, likewise for `W_h{g}`;
- `bias_ih_l{k}`, `bias_hh_l{k}`: `(G*H,)`, the input-side and recurrent-side biases.
Gate order along rows: RNN `h` (G=1); LSTM `i, f, g, o` (torch's `g` is the canonical `c`);
GRU `r, z, n` (torch's `n` is the canonical candidate `h`).

Biases: torch adds both vectors of a gate, so writing puts the canonical bias on the input side
and zero on the recurrent side, and reading sums them. The GRU candidate is the exception: its
recurrent bias sits inside `R * (...)`, so `b_h` is `bias_ih`'s n block and `b_hn` is
`bias_hh`'s n block, both ways. Gradients follow the chain rule: a canonical bias's gradient is
the gradient of the input-side bias (it equals the recurrent side's, it is not their sum).
"""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np

from common.config import LayerSpec
from common.params import Params, prefixes, sub_params

# Canonical gate names in torch's row order.
NATIVE_GATES = {"rnn": ("h",), "lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h")}


def native_suffixes(spec: LayerSpec) -> Iterator[Tuple[str, str]]:
    """(canonical prefix, native suffix) pairs: (`l0.`, `l0`), (`l0_rev.`, `l0_reverse`), ..."""
    for prefix in prefixes(spec):
        yield prefix, prefix[:-1].replace("_rev", "_reverse")


def _is_gru_candidate(spec: LayerSpec, gate: str) -> bool:
    return spec.cell == "gru" and gate == "h"


def to_native(spec: LayerSpec, params: Params) -> Dict[str, np.ndarray]:
    """Canonical params -> `{weight_ih_l0: (G*H, in), ..., bias_hh_l0: (G*H,)}` (NumPy)."""
    native = {}
    gates = NATIVE_GATES[spec.cell]
    for prefix, sfx in native_suffixes(spec):
        p = sub_params(params, prefix)
        native[f"weight_ih_{sfx}"] = np.concatenate([p[f"W_x{g}"].T for g in gates])
        native[f"weight_hh_{sfx}"] = np.concatenate([p[f"W_h{g}"].T for g in gates])
        native[f"bias_ih_{sfx}"] = np.concatenate([p[f"b_{g}"] for g in gates])
        native[f"bias_hh_{sfx}"] = np.concatenate([
            p["b_hn"] if _is_gru_candidate(spec, g) else np.zeros_like(p[f"b_{g}"]) for g in gates])
    return native


def _blocks(array: np.ndarray, gates) -> Dict[str, np.ndarray]:
    """Split a native `(G*H, ...)` array into its gates' `(H, ...)` row blocks."""
    return dict(zip(gates, np.split(array, len(gates))))


def _from_native(spec: LayerSpec, native: Dict[str, np.ndarray], sum_biases: bool) -> Params:
    """Shared reader: weights transpose back; biases sum (values) or take the input side (grads)."""
    params = {}
    gates = NATIVE_GATES[spec.cell]
    for prefix, sfx in native_suffixes(spec):
        w_ih = _blocks(native[f"weight_ih_{sfx}"], gates)
        w_hh = _blocks(native[f"weight_hh_{sfx}"], gates)
        b_ih = _blocks(native[f"bias_ih_{sfx}"], gates)
        b_hh = _blocks(native[f"bias_hh_{sfx}"], gates)
        for g in gates:
            params[prefix + f"W_x{g}"] = np.array(w_ih[g].T, order="C")  # a copy, never a view
            params[prefix + f"W_h{g}"] = np.array(w_hh[g].T, order="C")
            separate = _is_gru_candidate(spec, g) or not sum_biases
            params[prefix + f"b_{g}"] = b_ih[g].copy() if separate else b_ih[g] + b_hh[g]
            if _is_gru_candidate(spec, g):
                params[prefix + "b_hn"] = b_hh[g].copy()
    return params


def from_native(spec: LayerSpec, native: Dict[str, np.ndarray]) -> Params:
    """Native params -> canonical; each gate's two biases are summed (GRU candidate kept apart)."""
    return _from_native(spec, native, sum_biases=True)


def grads_from_native(spec: LayerSpec, native_grads: Dict[str, np.ndarray]) -> Params:
    """Gradients of native params -> gradients of canonical params (chain rule, no bias sum)."""
    return _from_native(spec, native_grads, sum_biases=False)
