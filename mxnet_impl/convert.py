"""Exact conversion between canonical parameters and Gluon's fused `rnn.RNN/LSTM/GRU` layout.

Native layout (MXNet 1.9.1; checked with `collect_params()` and by
tests/test_convert_mxnet_impl.py), names given without the block's own prefix (`lstm0_`):
- per layer `k`: `l{k}_...` for the forward direction, `r{k}_...` for the reverse one;
- `{d}{k}_i2h_weight (G*H, in)`, `{d}{k}_h2h_weight (G*H, H)`, `{d}{k}_i2h_bias (G*H)`,
  `{d}{k}_h2h_bias (G*H)`: gates stacked along the first axis, weights stored `(out, in)`;
- gate order: rnn `h`; lstm `i, f, c(g), o`; gru `r, z, n` (n = candidate, canonical `h`).

Canonical weights are `(in, out)`, so each gate block is transposed. Writing puts the canonical
bias on the input side (`i2h_bias`) and zeros on the recurrent side, except GRU's `b_hn`, which
is the recurrent-side bias of the candidate (`h2h_bias` block n, input side `b_h`). Reading sums
the two biases of a gate (the candidate's stay apart). Gradients map by the chain rule: each
canonical bias has the gradient of its input-side native bias (`b_hn`: the recurrent one).
"""
import numpy as np

from common.params import CELL_GATES, prefixes

# Gluon's gate blocks, top to bottom, in canonical gate letters.
NATIVE_GATES = {"rnn": ("h",), "lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h")}


def native_prefix(prefix):
    """Canonical `l{k}.` / `l{k}_rev.` -> Gluon's `l{k}_` / `r{k}_`."""
    layer = prefix[1:].split(".")[0].split("_")[0]
    return ("r" if "_rev." in prefix else "l") + layer + "_"


def native_names(spec):
    """Every native parameter name of the stack (without the block prefix), in a fixed order."""
    return [native_prefix(p) + n for p in prefixes(spec)
            for n in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")]


def _stack_weights(p, side, gates):
    """Canonical `(in, H)` blocks of `side` ('x' or 'h') -> native `(G*H, in)`."""
    return np.concatenate([p[f"W_{side}{g}"].T for g in gates], axis=0)


def _recurrent_bias(cell, p, gates):
    """Native `h2h_bias`: zeros except GRU's candidate block, which carries `b_hn`."""
    return np.concatenate([p["b_hn"] if (cell == "gru" and g == "h") else np.zeros_like(p[f"b_{g}"])
                           for g in gates])


def to_native(spec, params):
    """Canonical params -> `{native_name: array}` in Gluon's layout (same dtype)."""
    gates = NATIVE_GATES[spec.cell]
    native = {}
    for prefix in prefixes(spec):
        p = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        n = native_prefix(prefix)
        native[n + "i2h_weight"] = _stack_weights(p, "x", gates)
        native[n + "h2h_weight"] = _stack_weights(p, "h", gates)
        native[n + "i2h_bias"] = np.concatenate([p[f"b_{g}"] for g in gates])
        native[n + "h2h_bias"] = _recurrent_bias(spec.cell, p, gates)
    return native


def _unstack(native, name, gates):
    """Native `(G*H, ...)` -> `{gate: block}`."""
    return dict(zip(gates, np.split(native[name], len(gates), axis=0)))


def _read_direction(cell, native, n, sum_biases):
    """One (layer, direction) `n` ("l0_") -> canonical keys without prefix."""
    gates = NATIVE_GATES[cell]
    w_x, w_h = (_unstack(native, n + s + "_weight", gates) for s in ("i2h", "h2h"))
    b_x, b_h = (_unstack(native, n + s + "_bias", gates) for s in ("i2h", "h2h"))
    out = {}
    for g in CELL_GATES[cell]:
        out[f"W_x{g}"] = np.ascontiguousarray(w_x[g].T)
        out[f"W_h{g}"] = np.ascontiguousarray(w_h[g].T)
        keep_apart = cell == "gru" and g == "h"  # b_h and b_hn are two canonical keys
        out[f"b_{g}"] = b_x[g] + b_h[g] if (sum_biases and not keep_apart) else b_x[g].copy()
    if cell == "gru":
        out["b_hn"] = b_h["h"].copy()
    return out


def _read(spec, native, sum_biases):
    """Weights transposed back; biases summed (values) or input-side only (gradients)."""
    out = {}
    for prefix in prefixes(spec):
        part = _read_direction(spec.cell, native, native_prefix(prefix), sum_biases)
        out.update({prefix + k: v for k, v in part.items()})
    return out


def from_native(spec, native):
    """Gluon's parameters -> canonical (a gate's two biases summed; GRU's `b_hn` kept apart)."""
    return _read(spec, native, sum_biases=True)


def grads_from_native(spec, native_grads):
    """Gradients of Gluon's parameters -> canonical gradients (chain rule: input-side bias)."""
    return _read(spec, native_grads, sum_biases=False)
