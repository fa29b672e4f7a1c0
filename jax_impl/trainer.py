"""One training step of a `JaxLM`: forward, mean cross-entropy, gradients, d2l's clipping, then
`optax.sgd` or `optax.adam`, all in one jitted function (`train_step`).

The built-in layer trains the canonical model with no masking. torch's and Gluon's trainers zero
the gradients of the recurrent-side bias blocks that duplicate a canonical bias
(`duplicate_bias_masks`); Flax's cells carry exactly one bias per gate (convert.py), so there is
no copy to keep at zero, and a built-in model follows the scratch model's trajectory as it is.
The scratch reset_before GRU's `b_hn` duplicates `b_h` (`common.params.redundant_bias_keys`);
its gradient is zeroed here as torch's and Gluon's trainers zero it.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from common.config import OPTIMIZERS, check_choice
from common.params import Params, redundant_bias_keys

from .arrays import from_numpy
from .lm import JaxLM, loss_fn

OPTAX = {"sgd": optax.sgd, "adam": optax.adam}


def clip_gradients(grads, theta):
    """d2l's global-norm clipping of a pytree: if `norm = sqrt(sum g**2) > theta`,
    `g *= theta / norm`.

    A `jnp.where` rather than a branch, so it traces; scaling by exactly 1.0 changes no bit.
    Not `optax.clip_by_global_norm`: it computes `(g / norm) * theta`, which rounds differently.
    """
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))
    scale = jnp.where(norm > theta, theta / norm, jnp.ones_like(norm))
    return jax.tree.map(lambda g: g * scale, grads)


@functools.partial(jax.jit, static_argnums=(0, 1))
def train_step(cfg, optimizer: str, params, opt_state, ids, targets, state, hyper):
    """One step -> `(loss, new params, new optimizer state, final states)`; jitted.

    `hyper`: `{"lr": ()}` plus `"clip": ()` when clipping is on, as arrays, so that trainers of
    one `cfg` and optimizer share an executable whatever their rates (a missing `"clip"` is a
    different pytree, hence its own trace). `ids, targets: (B, T)`; `state` as in `lm_forward`.
    """
    (loss, finals), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
        cfg, params, ids, targets, state)
    held = redundant_bias_keys(cfg.layer_spec) if cfg.impl != "builtin" else ()
    grads = {k: jnp.zeros_like(g) if k in held else g for k, g in grads.items()}
    if "clip" in hyper:
        grads = clip_gradients(grads, hyper["clip"])
    updates, opt_state = OPTAX[optimizer](hyper["lr"]).update(grads, opt_state, params)
    return loss, optax.apply_updates(params, updates), opt_state, finals


class Trainer:
    """Updates a `JaxLM` in place; `step(ids, targets, state) -> (loss, state)`.

    `optimizer="sgd"`: `optax.sgd(lr)`, `p + (-lr * g)` (no momentum); `"adam"`: `optax.adam(lr)`
    with its defaults (b1 0.9, b2 0.999, eps 1e-8). The returned state is a list of JAX arrays on
    the model's device; nothing needs detaching (JAX arrays carry no graph), and it goes back
    into the next `step` as it is.
    """

    def __init__(self, model: JaxLM, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0):
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.model, self.optimizer = model, optimizer
        with model.scope():
            self.hyper = {"lr": from_numpy(lr, model.dtype)}
            if clip is not None:
                self.hyper["clip"] = from_numpy(clip, model.dtype)
            self.opt_state = OPTAX[optimizer](lr).init(model.params)

    def step(self, ids, targets, state=None):
        """`ids, targets: (B, T)`; `state`: the previous step's (None: zeros) -> `(loss, state)`."""
        loss, state = self.step_async(ids, targets, state)
        return float(loss), state

    def step_async(self, ids, targets, state=None):
        """`step` without waiting for the result: `(loss as a 0-d array, final states)`.

        JAX dispatches asynchronously; a timing harness blocks on the loss and `model.params`.
        """
        model = self.model
        with model.scope():
            ids, targets = model.ids_in(ids), model.ids_in(targets)
            state = model.states_in(state, ids.shape[0])
            loss, model.params, self.opt_state, finals = train_step(
                model.cfg, self.optimizer, model.params, self.opt_state, ids, targets, state,
                self.hyper)
            return loss, finals

    def params(self) -> Params:
        """The model's current parameters in canonical form (NumPy)."""
        return self.model.canonical_params()


def make_trainer(model: JaxLM, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping)."""
    return Trainer(model, optimizer, lr, clip)
