"""The adapter protocol every backend speaks (docs/contract.md, "What each backend offers").

Each of `torch_impl/adapter.py`, `mxnet_impl/adapter.py` and `jax_impl/adapter.py` defines
`BACKEND`, an object with the methods below. Everything crossing the boundary is NumPy.

States: a list with one entry per (layer, direction) in the order l0, l0_rev, l1, ...; each
entry is a `(B, H)` array, or for LSTM a tuple `(H, C)` of two such arrays. `None` means zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol

import numpy as np

from .config import LayerSpec
from .errors import NotSupported
from .params import Params


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


class Backend(Protocol):
    name: str            # "torch", "mxnet", "jax"

    def info(self) -> dict:
        """Framework version(s), devices it sees, thread settings."""

    def build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str = "float32",
                    device: str = "cpu"):
        """A layer of `impl` ("scratch" | "builtin") holding `params` (canonical), ready to run.

        Raises `common.errors.NotSupported` for a combination the framework cannot compute.
        """

    def get_params(self, layer) -> Params:
        """The layer's parameters read back in canonical form (NumPy)."""

    def forward(self, layer, X: np.ndarray, state: Optional[list] = None):
        """`X: (T, B, I)` -> `(Y: (T, B, H*D), states)`."""

    def vjp(self, layer, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        """Gradients of `sum(Y*G) (+ sum(final_states*G_state))` in canonical names."""


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


def flatten_state(state) -> List[np.ndarray]:
    """States as a flat list of arrays (LSTM pairs unpacked), for comparisons."""
    out = []
    for entry in state or []:
        out.extend(entry if isinstance(entry, (tuple, list)) else [entry])
    return out


class LMBackend(Protocol):
    """The language-model half of an adapter (docs/contract.md: ids in, logits out, loss,
    gradients).

    Canonical LM parameters: the layer stack's keys, `embedding (V, E)` when
    `cfg.embed_size` is set, `W_hq (H, V)`, `b_q (V)` (see `common.params.lm_param_shapes`).
    The loss is the mean cross-entropy over all B*T positions, as in d2l.
    """

    def build_lm(self, cfg, params: Params, dtype: str = "float32", device: str = "cpu"):
        """A model handle holding `params`; `cfg` is a `common.config.LMConfig`."""

    def lm_params(self, model) -> Params:
        """The model's current parameters in canonical form."""

    def lm_forward(self, model, ids: np.ndarray, state=None):
        """`ids: (B, T)` int64 -> `(logits: (B, T, V), final states)` as NumPy."""

    def lm_loss_grads(self, model, ids: np.ndarray, targets: np.ndarray, state=None):
        """`(loss: float, grads: canonical dict, final states)` of the mean cross-entropy."""

    def make_trainer(self, model, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0):
        """A trainer: `.step(ids, targets, state) -> (loss: float, state)` updates the model
        in place (SGD or Adam; d2l's global-norm clipping when `clip` is set), where `state`
        is the framework's own, detached from the graph, `None` meaning zeros;
        `.params()` -> canonical dict."""
