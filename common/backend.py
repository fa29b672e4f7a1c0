"""The adapter every backend is (docs/contract.md, "What each backend offers").

Each of `torch_impl/adapter.py`, `mxnet_impl/adapter.py` and `jax_impl/adapter.py` defines
`BACKEND`, an instance of a subclass of `Backend` below. Everything crossing the boundary is
NumPy.

States: a list with one entry per (layer, direction) in the order l0, l0_rev, l1, ...; each
entry is a `(B, H)` array, or for LSTM a tuple `(H, C)` of two such arrays. `None` means zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .config import DTYPES, IMPLS, SPEED_DTYPES, LayerSpec, check_choice
from .errors import NotSupported
from .params import Params, cast_params, check_params, lm_param_shapes, param_shapes


@dataclass
class VJPResult:
    """Forward results and the vector-Jacobian product of `sum(Y * G) + sum(states * G_state)`.

    `grads`: canonical names -> arrays; `dX`: `(T, B, I)`; `dstate`: gradient with respect to
    the initial state in the state layout (None when no initial state was given).
    """

    outputs: np.ndarray
    states: list
    grads: Params
    dX: np.ndarray
    dstate: Optional[list]


INFO_KEYS = {"framework": str, "versions": dict, "devices": list, "threads": dict,
             "default_device": str, "details": dict}  # `info()`'s schema in every backend
HOOKS = ("_build_layer", "get_params", "forward", "vjp", "_build_lm", "lm_forward",
         "lm_loss_grads", "make_trainer", "info")


class Backend:
    """What every adapter offers (docs/contract.md). The checks every framework shares run here,
    once; each adapter subclasses this and implements the hooks (`HOOKS`), which receive
    validated, cast arguments. Where a framework cannot compute something, a hook raises
    `common.errors.NotSupported`.
    """

    name = ""            # "torch", "mxnet", "jax"
    builtin_gru = ""     # the built-in GRU's name, for the reset_before refusal

    def build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str = "float32",
                    device: str = "cpu"):
        """A layer of `impl` ("scratch" | "fast" | "builtin") holding `params` (canonical),
        ready to run; NotSupported for a combination the framework cannot compute."""
        check_choice("impl", impl, IMPLS)
        check_choice("dtype", dtype, DTYPES)
        check_params(params, param_shapes(spec))
        if impl == "builtin":
            refuse_reset_before(spec, self.builtin_gru)
        return self._build_layer(spec, impl, cast_params(params, dtype), dtype, device)

    def build_lm(self, cfg, params: Params, dtype: str = "float32", device: str = "cpu"):
        """A model handle holding `params`; `cfg` is a `common.config.LMConfig`.

        Canonical LM parameters: the layer stack's keys, `embedding (V, E)` when
        `cfg.embed_size` is set, `W_hq (H, V)`, `b_q (V)` (`common.params.lm_param_shapes`).
        The loss is the mean cross-entropy over all B*T positions, as in d2l.
        """
        check_choice("dtype", dtype, SPEED_DTYPES)
        if cfg.layer_spec.bidirectional:
            raise NotSupported("a bidirectional language model would see the tokens it predicts")
        check_params(params, lm_param_shapes(cfg))
        if cfg.impl == "builtin":
            refuse_reset_before(cfg.layer_spec, self.builtin_gru)
        return self._build_lm(cfg, cast_params(params, dtype), dtype, device)

    def lm_params(self, model) -> Params:
        """The model's current parameters in canonical form."""
        return model.canonical_params()

    # The hooks.

    def _build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str, device: str):
        """`build_layer` after the checks; `params` already cast to `dtype`."""
        raise NotImplementedError

    def get_params(self, layer) -> Params:
        """The layer's parameters read back in canonical form (NumPy)."""
        raise NotImplementedError

    def forward(self, layer, X: np.ndarray, state: Optional[list] = None):
        """`X: (T, B, I)` -> `(Y: (T, B, H*D), states)`."""
        raise NotImplementedError

    def vjp(self, layer, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        """Gradients of `sum(Y*G) (+ sum(final_states*G_state))` in canonical names."""
        raise NotImplementedError

    def _build_lm(self, cfg, params: Params, dtype: str, device: str):
        """`build_lm` after the checks; `params` already cast to `dtype`."""
        raise NotImplementedError

    def lm_forward(self, model, ids: np.ndarray, state=None):
        """`ids: (B, T)` int64 -> `(logits: (B, T, V), final states)` as NumPy."""
        raise NotImplementedError

    def lm_loss_grads(self, model, ids: np.ndarray, targets: np.ndarray, state=None):
        """`(loss: float, grads: canonical dict, final states)` of the mean cross-entropy."""
        raise NotImplementedError

    def make_trainer(self, model, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0):
        """A trainer: `.step(ids, targets, state) -> (loss: float, state)` updates the model
        in place (SGD or Adam; d2l's global-norm clipping when `clip` is set), where `state`
        is the framework's own, detached from the graph, `None` meaning zeros;
        `.params()` -> canonical dict."""
        raise NotImplementedError

    def info(self) -> dict:
        """Framework, versions, devices, threads, default device, and the framework's own
        `details`: the keys and types of `INFO_KEYS` (the package's runtime.info())."""
        raise NotImplementedError


def zeros_state(spec: LayerSpec, batch: int, dtype="float64") -> List:
    """The all-zero state in the contract's layout."""
    z = lambda: np.zeros((batch, spec.hidden_size), dtype=dtype)
    n = spec.num_layers * spec.num_directions
    return [(z(), z()) if spec.cell == "lstm" else z() for _ in range(n)]


def random_state(spec: LayerSpec, batch: int, rng: np.random.Generator, dtype="float64",
                 scale: float = 0.5) -> List:
    """A random state in the contract's layout (for non-zero initial states and cotangents)."""
    r = lambda: rng.uniform(-scale, scale, size=(batch, spec.hidden_size)).astype(dtype)
    n = spec.num_layers * spec.num_directions
    return [(r(), r()) if spec.cell == "lstm" else r() for _ in range(n)]


def check_state_count(spec: LayerSpec, state: list) -> None:
    """Raise ValueError unless `state` has one entry per (layer, direction) of `spec`."""
    expected = spec.num_layers * spec.num_directions
    if len(state) != expected:
        raise ValueError(f"{spec.label} takes {expected} states (one per layer and direction), "
                         f"got {len(state)}")


def hidden_of(state):
    """The hidden `H` of one state entry (`(H, C)` for LSTM), in any framework's arrays."""
    return state[0] if isinstance(state, tuple) else state


def refuse_reset_before(spec: LayerSpec, builtin: str) -> None:
    """Raise NotSupported for a GRU variant the framework's built-in `builtin` lacks: every
    built-in computes only the reset_after candidate."""
    if spec.cell == "gru" and spec.gru_variant != "reset_after":
        raise NotSupported(
            f"{builtin} computes only the reset_after candidate "
            f"(tanh(X W_xh + b_h + R * (H W_hh + b_hn))); {spec.gru_variant} needs "
            "impl='scratch' or 'fast'")


def convert_state(spec: LayerSpec, state: list, convert) -> List:
    """`convert` applied to every array of a contract-layout state (LSTM pairs stay tuples),
    after checking it has one entry per (layer, direction)."""
    check_state_count(spec, state)
    return [tuple(map(convert, s)) if spec.cell == "lstm" else convert(s) for s in state]


def flatten_state(state) -> List[np.ndarray]:
    """States as a flat list of arrays (LSTM pairs unpacked), for comparisons."""
    out = []
    for entry in state or []:
        out.extend(entry if isinstance(entry, (tuple, list)) else [entry])
    return out
