"""The character language model in JAX: pure functions over explicit parameters.

ids `(B, T)` -> inputs `(T, B, I)` (d2l's one-hot of `ids.T`, or a lookup in `embedding (V, E)`)
-> the layer stack (a scratch `lax.scan` stack, d2l's or fast, or Flax's `nn.RNN`) -> `Y @ W_hq + b_q` -> logits
`(B, T, V)`; the loss is the mean cross-entropy over all B*T positions. State goes in and comes
out in the contract's layout; `JaxLM` holds parameters only, never a hidden state.

Parameters are one flat dict (a pytree): canonical names for the head (and for scratch and fast the
layer stack too); for builtin the layer stack under Flax's native names (convert.py), so gradients
and updates are taken with respect to the built-in's own parameters. Every call runs inside
`JaxLM.scope()` (x64 only for float64, as the layer adapter does) and creates its arrays there.
`forward_jit` and `loss_and_grads` are jitted once at module level with `cfg` static, so JAX's
cache holds one executable per (cfg, dtype, shapes, device), shared by every model of that cfg.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from common.config import LMConfig
from common.params import LM_HEAD_KEYS, Params, lm_canonical

from .arrays import from_numpy, ids_in, states_in, to_numpy
from .convert import from_native, grads_from_native
from .devices import compute_scope
from .layers import builtin_code_path, builtin_forward, code_path_of, forward_of, make_builtin

HEAD_KEYS = LM_HEAD_KEYS  # canonical keys outside the layer stack


def one_hot_or_embed(cfg: LMConfig, params, ids: jax.Array) -> jax.Array:
    """The layer's time-major inputs: `ids: (B, T)` -> `X: (T, B, V)` one-hot or `(T, B, E)`."""
    if cfg.embed_size is None:
        return jax.nn.one_hot(ids.T, cfg.vocab_size, dtype=params["W_hq"].dtype)
    return jnp.take(params["embedding"], ids.T, axis=0)


def lm_forward(cfg: LMConfig, params, ids: jax.Array, state=None):
    """`ids: (B, T)` -> `(logits: (B, T, V), final states)`; `state=None` means zeros.

    `params`: arrays by canonical name; for `cfg.impl == "builtin"` the layer stack's arrays
    go by Flax's native names (convert.py) instead.
    """
    X = one_hot_or_embed(cfg, params, ids)
    layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    if cfg.impl == "builtin":
        Y, finals = builtin_forward(cfg.layer_spec, layer, X, state)
    else:
        Y, finals = forward_of(cfg.impl)(cfg.layer_spec, layer, X, state)
    logits = Y @ params["W_hq"] + params["b_q"]  # (T, B, V)
    return jnp.swapaxes(logits, 0, 1), finals


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy over every (batch, step): `logits: (B, T, V)`, `targets: (B, T)`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def loss_fn(cfg: LMConfig, params, ids, targets, state):
    """`(loss, final states)`: the mean cross-entropy of `lm_forward`, for `jax.value_and_grad`."""
    logits, finals = lm_forward(cfg, params, ids, state)
    return cross_entropy(logits, targets), finals


forward_jit = jax.jit(lm_forward, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def loss_and_grads(cfg: LMConfig, params, ids, targets, state):
    """`(loss, grads by the names of params, final states)`; jitted."""
    (loss, finals), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
        cfg, params, ids, targets, state)
    return loss, grads, finals


@dataclass
class JaxLM:
    """A language model's parameters: device arrays in `params` (canonical names, the built-in's
    layer stack by native names); `code_path` names the code that runs, for every record."""

    cfg: LMConfig
    dtype: str
    device: jax.Device
    params: Dict[str, jax.Array]
    code_path: str = ""

    def scope(self):
        return compute_scope(self.device, self.dtype)

    def forward(self, ids: jax.Array, state=None):
        """`ids: (B, T)` int32 array -> `(logits: (B, T, V), final states)`; call in `scope()`."""
        return forward_jit(self.cfg, self.params, ids, self.states_in(state, ids.shape[0]))

    def ids_in(self, ids) -> jax.Array:
        """Token ids (NumPy or JAX, `(B, T)`) as int32 on the device; NumPy ids are range-checked
        (JAX would clamp or zero an out-of-range id where torch raises)."""
        return ids_in(ids, None, self.cfg.vocab_size)

    def states_in(self, state, batch: int) -> List:
        """A state in the contract's layout (NumPy or JAX) as device arrays; None -> zeros, so
        one executable serves both."""
        return states_in(self.cfg.layer_spec, state, self.dtype, None, batch)

    def canonical(self, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
        """NumPy arrays named as `params` -> canonical names (gradients by the chain rule)."""
        if self.cfg.impl != "builtin":
            return dict(named)
        return lm_canonical(self.cfg.layer_spec, named, grads_from_native if grads else from_native)

    def canonical_params(self) -> Params:
        """The current parameters in canonical form (writable NumPy copies)."""
        return self.canonical(to_numpy(self.params))


def build_lm(cfg: LMConfig, params: Params, dtype: str, device: jax.Device) -> JaxLM:
    """A `JaxLM` holding canonical `params` (NumPy, already checked and cast) exactly.

    Builtin: the layer stack is renamed into Flax's layout once and stays there while training;
    only the head stays canonical. Raises `NotSupported` as `make_builtin` does.
    """
    builtin = cfg.impl == "builtin"
    code_path = (builtin_code_path(cfg.layer_spec, device.platform) if builtin
                 else code_path_of(cfg.impl, device.platform, cfg.layer_spec))
    model = JaxLM(cfg, dtype, device, {}, code_path + "; output layer jnp.matmul in the same jit")
    with model.scope():
        head = {k: v for k, v in params.items() if k in HEAD_KEYS or not builtin}
        layer = {k: v for k, v in params.items() if k not in head}
        model.params = {**(make_builtin(cfg.layer_spec, layer, dtype, None) if builtin else {}),
                        **{k: from_numpy(v, dtype) for k, v in head.items()}}
    return model
