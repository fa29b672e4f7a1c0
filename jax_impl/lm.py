"""The character language model in JAX: pure functions over explicit parameters.

ids `(B, T)` -> inputs `(T, B, I)` (d2l's one-hot of `ids.T`, or a lookup in `embedding (V, E)`)
-> the layer stack (a scratch `lax.scan` stack, d2l's or fast, or Flax's `nn.RNN`) -> `Y @ W_hq + b_q` -> logits
`(B, T, V)`; the loss is the mean cross-entropy over all B*T positions. State goes in and comes
out in the contract's layout; the `model.Model` holds parameters only, never a hidden state.

Parameters are one flat dict (a pytree): canonical names for the head (and for scratch and fast the
layer stack too); for builtin the layer stack under Flax's native names (convert.py), so gradients
and updates are taken with respect to the built-in's own parameters. Every call runs inside
`Model.scope()` (x64 only for float64, as the layer adapter does) and creates its arrays there.
`forward_jit` and `loss_and_grads` are jitted once at module level with `cfg` static, and the
trainer's step (trainer.train_step) with `cfg`, `loss` and the optimizer static, so JAX's cache
holds one executable per (cfg, dtype, shapes, device), shared by every model of that cfg.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from common.config import LMConfig
from common.params import LM_HEAD_KEYS, Params, duplicate_bias_masks, lm_canonical

from .arrays import states_in
from .layers import builtin_code_path, builtin_forward, code_path_of, forward_of
from .model import Model, build_model
from .trainer import Trainer, make_optimizer

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


def loss(cfg: LMConfig, params, ids, targets, state):
    """The trainer's loss, traced: `(mean cross-entropy of lm_forward, the same, final states)`;
    `ids, targets: (B, T)` int32 arrays, `state` as in `lm_forward`."""
    logits, finals = lm_forward(cfg, params, ids, state)
    value = cross_entropy(logits, targets)
    return value, value, finals


forward_jit = jax.jit(lm_forward, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def loss_and_grads(cfg: LMConfig, params, ids, targets, state):
    """`(loss, grads by the names of params, final states)`; jitted."""
    def differentiated(p):
        _, value, finals = loss(cfg, p, ids, targets, state)
        return value, finals

    (value, finals), grads = jax.value_and_grad(differentiated, has_aux=True)(params)
    return value, grads, finals


def forward(model: Model, ids: jax.Array, state=None):
    """A built LM's forward: `ids: (B, T)` int32 array -> `(logits: (B, T, V), final states)`,
    jitted; call inside `model.scope()`."""
    return forward_jit(model.cfg, model.params, ids, lm_states_in(model, state, ids.shape[0]))


def lm_states_in(model: Model, state, batch=None) -> List:
    """A state in the contract's layout (NumPy or JAX) as device arrays; None -> zeros of
    `batch` rows, so that one executable serves both; call inside `model.scope()`."""
    return states_in(model.cfg.layer_spec, state, model.dtype, None, batch)


def _inputs(model: Model, ids, targets, state=None):
    """The trainer's batch as device arrays: ids range-checked, None state -> zeros."""
    V = model.cfg.vocab_size
    ids, targets = model.ids_in(ids, V), model.ids_in(targets, V)
    return ids, targets, lm_states_in(model, state, ids.shape[0])


def bias_masks(model: Model) -> Dict[str, np.ndarray]:
    """`common.params.duplicate_bias_masks` by canonical names for scratch and fast (the
    reset_before GRU's `b_hn`); none for the built-in, whose Flax cells hold one bias per
    gate (trainer.py says why). NumPy; the trainer casts them."""
    return {} if model.module is not None else duplicate_bias_masks(model.cfg.layer_spec)


def make_trainer(model: Model, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping):
    `step(ids, targets, state) -> (loss, final states)`; the state is a list of JAX arrays on
    the model's device, and goes back into the next `step` as it is."""
    return Trainer(model, loss, make_optimizer(model, optimizer, lr), clip, bias_masks(model),
                   inputs=_inputs)


def build_lm(cfg: LMConfig, params: Params, dtype: str, device: jax.Device) -> Model:
    """A `Model` holding canonical `params` (NumPy, already checked and cast) exactly.

    Builtin: the layer stack is renamed into Flax's layout once and stays there while training;
    only the head stays canonical. Raises `NotSupported` as `make_builtin` does.
    """
    spec, suffix = cfg.layer_spec, "; output layer jnp.matmul in the same jit"
    if cfg.impl != "builtin":
        return build_model(cfg, cfg.impl, params, dtype, device,
                           code_path_of(cfg.impl, device.platform, spec) + suffix)
    layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    head = {k: v for k, v in params.items() if k in HEAD_KEYS}
    return build_model(cfg, cfg.impl, head, dtype, device,
                       builtin_code_path(spec, device.platform) + suffix, {"": (spec, layer)},
                       lambda named, convert: lm_canonical(spec, named, convert))
