"""Exact conversion between canonical parameters and the layout of Flax's built-in cells.

Native names are the flattened Flax parameter paths joined with `/`, without the `params`
collection: `layer_{k}/cell/<dense>/<kernel|bias>` for a unidirectional layer,
`layer_{k}/forward_rnn/cell/...` and `layer_{k}/backward_rnn/cell/...` for a bidirectional one
(layers.BuiltinStack builds that tree). Kernels are `(in, out)` like the canonical weights, so
nothing is transposed; each gate is its own `Dense`:
- `nn.SimpleCell`: `i` (input kernel + bias), `h` (recurrent kernel, no bias).
- `nn.LSTMCell` / `nn.OptimizedLSTMCell` (same tree): `ii, if, ig, io` (input kernels, no bias),
  `hi, hf, hg, ho` (recurrent kernels + biases). Flax's `g` is the canonical `c`. The carry
  is `(c, h)`, the contract's state `(H, C)`: layers.py swaps it.
- `nn.GRUCell`: `ir, iz, in` (input kernels + biases), `hr, hz` (recurrent kernels, no bias),
  `hn` (recurrent kernel + bias, inside `r * (...)`: reset_after). Flax's `n` is the
  canonical candidate `h`; `h' = (1 - z) * n + z * h` as in the contract.

Biases: unlike cuDNN-style layouts, Flax gives every gate exactly one bias, on the input side
(SimpleCell, GRU `r, z, n`) or on the recurrent side (LSTM); the GRU candidate's second bias
`hn/bias` is `b_hn`. So each canonical parameter is exactly one native array, both ways:
there are no two biases to sum when reading, and gradients map one to one (the chain rule,
with a single path).
"""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np

from common.config import LayerSpec
from common.params import Params, prefixes

# Canonical gate names in Flax's order (its source's LSTM i, f, g, o; GRU r, z, n), zipped
# with Flax's own gate letters: canonical `c` is Flax's `g`, the GRU candidate `h` its `n`.
NATIVE_GATES = {"rnn": ("h",), "lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h")}
FLAX_LETTERS = {"rnn": ("",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
# Which side holds each cell's bias ("i" input, "h" recurrent); GRU's b_hn is always `hn`.
BIAS_SIDE = {"rnn": "i", "lstm": "h", "gru": "i"}


def cell_table(cell: str) -> Dict[str, str]:
    """Canonical key (no prefix) -> native path inside one Flax cell, e.g. `W_xi` -> `ii/kernel`."""
    table = {}
    for gate, letter in zip(NATIVE_GATES[cell], FLAX_LETTERS[cell], strict=True):
        table[f"W_x{gate}"] = f"i{letter}/kernel"
        table[f"W_h{gate}"] = f"h{letter}/kernel"
        table[f"b_{gate}"] = f"{BIAS_SIDE[cell]}{letter}/bias"
    if cell == "gru":
        table["b_hn"] = "hn/bias"
    return table


def native_scopes(spec: LayerSpec) -> Iterator[Tuple[str, str]]:
    """(canonical prefix, native cell scope): (`l0.`, `layer_0/cell`) or `.../forward_rnn/cell`."""
    D = spec.num_directions
    for idx, prefix in enumerate(prefixes(spec)):
        layer = f"layer_{idx // D}"
        if D == 1:
            yield prefix, f"{layer}/cell"
        else:
            yield prefix, f"{layer}/{('forward_rnn', 'backward_rnn')[idx % D]}/cell"


def name_map(spec: LayerSpec) -> Dict[str, str]:
    """Every canonical key of `spec` -> its native name."""
    table = cell_table(spec.cell)
    return {prefix + key: f"{scope}/{leaf}" for prefix, scope in native_scopes(spec)
            for key, leaf in table.items()}


def to_native(spec: LayerSpec, params: Params) -> Dict[str, np.ndarray]:
    """Canonical params -> `{"layer_0/cell/ii/kernel": (I, H), ...}` (NumPy copies)."""
    return {native: np.array(params[key]) for key, native in name_map(spec).items()}


def _check_names(spec: LayerSpec, native: Dict[str, np.ndarray]) -> None:
    """Raise a ValueError naming native names that `spec`'s tree lacks or does not have."""
    expected = set(name_map(spec).values())
    missing, extra = sorted(expected - set(native)), sorted(set(native) - expected)
    if missing or extra:
        raise ValueError(f"native Flax parameters do not fit {spec.label}: "
                         f"missing {missing}, unexpected {extra}")


def from_native(spec: LayerSpec, native: Dict[str, np.ndarray]) -> Params:
    """Native params -> canonical (one native array per canonical key; nothing to sum)."""
    _check_names(spec, native)
    return {key: np.array(native[name]) for key, name in name_map(spec).items()}


def grads_from_native(spec: LayerSpec, native_grads: Dict[str, np.ndarray]) -> Params:
    """Gradients of native params -> canonical gradients (one path each, so a plain rename)."""
    return from_native(spec, native_grads)
