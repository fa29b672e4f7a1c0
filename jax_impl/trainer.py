"""The one trainer of the JAX backend: every experiment's training step is this one pure,
jitted function, `train_step`, over an explicit train state, with the experiment's loss.

A step: the loss (the experiment's module-level `loss(cfg, params, *batch) -> (loss reported,
loss differentiated, aux)`, traced), its gradients, the masks (gradients of duplicated biases
held at zero), d2l's global-norm clipping, the optax update (`optax.sgd`, `optax.adam`, or
fastai's Adam with its schedules, ladder.py), all in one jitted function. Its static arguments
are the loss, the experiment's config and the optimizer's transform (hashable, compared by
value), its traced ones the `TrainState` (parameters, optimizer state), the batch as device
arrays, the rates as arrays (`hyper`) and the masks: so trainers of one config and optimizer
share one executable whatever their rates. `Trainer` wraps it with torch's public names,
turning the caller's batch into device arrays on the host first (the experiment's `inputs`).

The built-in layer trains the canonical model with no masking. torch's and Gluon's trainers zero
the gradients of the recurrent-side bias blocks that duplicate a canonical bias
(`duplicate_bias_masks`); Flax's cells carry exactly one bias per gate (convert.py), so there is
no copy to keep at zero, and a built-in model follows the scratch model's trajectory as it is.
The scratch reset_before GRU's `b_hn` duplicates `b_h` (`common.params.redundant_bias_keys`);
its gradient is zeroed here as torch's and Gluon's trainers zero it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.config import OPTIMIZERS, check_choice
from common.params import Params

from .arrays import from_numpy
from .model import Model

OPTAX = {"sgd": optax.sgd, "adam": optax.adam}


class TrainState(NamedTuple):
    """What a step replaces: the parameter pytree and the optimizer's state."""

    params: Dict[str, jax.Array]
    opt_state: Any


@dataclass(frozen=True)
class Rated:
    """optax's `name` optimizer (`optax.sgd`: `p + (-lr * g)`, no momentum; `optax.adam`: its
    defaults, b1 0.9, b2 0.999, eps 1e-8) at the rate `hyper["lr"]`: a static argument of
    `train_step`, equal for equal names, so trainers of any rate share an executable."""

    name: str

    def __call__(self, hyper) -> optax.GradientTransformation:
        return OPTAX[self.name](hyper["lr"])


class Optimizer(NamedTuple):
    """What `make_optimizer` returns: `transform(hyper) -> optax.GradientTransformation`
    (hashable, static) and its rates `hyper` (arrays, traced)."""

    transform: Callable
    hyper: Dict[str, jax.Array]


def clip_gradients(grads, theta):
    """d2l's global-norm clipping of a pytree: if `norm = sqrt(sum g**2) > theta`,
    `g *= theta / norm`.

    A `jnp.where` rather than a branch, so it traces; scaling by exactly 1.0 changes no bit.
    Not `optax.clip_by_global_norm`: it computes `(g / norm) * theta`, which rounds differently.
    """
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))
    scale = jnp.where(norm > theta, theta / norm, jnp.ones_like(norm))
    return jax.tree.map(lambda g: g * scale, grads)


def make_optimizer(model: Model, optimizer: str = "sgd", lr: float = 1.0) -> Optimizer:
    """`optax.sgd` (no momentum) or `optax.adam` (its defaults) over every leaf, the rate as an
    array in the model's dtype."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    with model.scope():
        return Optimizer(Rated(optimizer), {"lr": from_numpy(lr, model.dtype)})


def _train_step(loss, cfg, transform, state: TrainState, batch, hyper, masks):
    """One step -> `(loss reported, new TrainState, aux)`; `train_step` is this, jitted.

    `hyper`: the transform's rates plus `"clip": ()` when clipping is on, as arrays (a missing
    `"clip"` is a different pytree, hence its own trace). `masks`: name -> array multiplying
    that gradient; where a mask is 0 the gradient is exactly zero.
    """
    def differentiated(params):
        reported, total, aux = loss(cfg, params, *batch)
        return total, (reported, aux)

    (_, (reported, aux)), grads = jax.value_and_grad(differentiated, has_aux=True)(state.params)
    grads = {k: jnp.where(masks[k] == 0, jnp.zeros_like(g), g * masks[k]) if k in masks else g
             for k, g in grads.items()}
    if "clip" in hyper:
        grads = clip_gradients(grads, hyper["clip"])
    updates, opt_state = transform(hyper).update(grads, state.opt_state, state.params)
    return reported, TrainState(optax.apply_updates(state.params, updates), opt_state), aux


train_step = jax.jit(_train_step, static_argnums=(0, 1, 2))


def _array_in(model: Model, b):
    """One batch entry as a device array: a JAX array as it is (no host round trip on the hot
    path), NumPy ids as int32, other NumPy in the model's dtype; call in scope."""
    if isinstance(b, jax.Array):
        return b
    return model.ids_in(b) if np.issubdtype(np.asarray(b).dtype, np.integer) else model.array(b)


def _arrays_in(model: Model, *batch):
    """The default `inputs`: every batch entry through `_array_in`."""
    return tuple(_array_in(model, b) for b in batch)


class Trainer:
    """Updates a `Model`: `step(*batch) -> (loss, aux)`, where `aux` is what the loss returns
    beside it (the language model's final states, say), and `model.params` becomes the new
    parameters.

    `loss(cfg, params, *arrays)`: module-level (a static argument of the jitted step), traced;
    `inputs(model, *batch) -> arrays`: the batch as device arrays, on the host, inside the
    model's scope (range checks, zero states, dropout draws); `optimizer`: `make_optimizer`'s
    or an experiment's `Optimizer` (fastai's Adam, its schedules inside: `scheduler` is unused,
    kept for torch's signature); `clip`: d2l's threshold (None: no clipping); `masks`: name ->
    NumPy mask on that gradient; `evaluate(model, *batch)`: the experiment's evaluation;
    `jit=False` runs the step op by op (the explain ladder's eager rungs). States and results
    are device arrays; nothing needs detaching (JAX arrays carry no graph).
    """

    def __init__(self, model: Model, loss: Callable, optimizer: Optimizer,
                 clip: Optional[float] = None, masks: Optional[Dict[str, np.ndarray]] = None,
                 scheduler=None, evaluate: Optional[Callable] = None,
                 inputs: Callable = _arrays_in, jit: bool = True):
        self.model, self.loss, self.transform = model, loss, optimizer.transform
        self.evaluator, self.inputs = evaluate, inputs
        self.step_fn = train_step if jit else _train_step
        with model.scope():
            self.hyper = dict(optimizer.hyper)
            if clip is not None:
                self.hyper["clip"] = from_numpy(clip, model.dtype)
            self.masks = {k: from_numpy(m, model.dtype) for k, m in (masks or {}).items()}
            self.opt_state = self.transform(self.hyper).init(model.params)

    @property
    def code_path(self) -> str:
        return self.model.code_path

    @property
    def state(self) -> TrainState:
        """The explicit train state: the model's parameters and the optimizer's state."""
        return TrainState(self.model.params, self.opt_state)

    def step(self, *batch):
        """One update on `batch` -> `(loss as a float, aux)`."""
        loss, aux = self.step_async(*batch)
        return float(loss), aux

    def step_async(self, *batch):
        """`step` without waiting for the result: `(loss as a 0-d array, aux)`.

        JAX dispatches asynchronously; a timing harness blocks on the loss and `model.params`.
        """
        with self.model.scope():
            loss, state, aux = self.step_fn(*self.step_args(*batch))
            self.model.params, self.opt_state = state
            return loss, aux

    def step_args(self, *batch) -> tuple:
        """The arguments `step` passes to `train_step` for `batch` (the first three static), for
        tracing or lowering it (rungs.count_ops); call inside the model's scope."""
        return (self.loss, self.model.cfg, self.transform, self.state,
                tuple(self.inputs(self.model, *batch)), self.hyper, self.masks)

    def evaluate(self, *batch):
        """The experiment's evaluation of the current parameters (no update, no gradients)."""
        with self.model.scope():
            return self.evaluator(self.model, *batch)

    def params(self) -> Params:
        """The model's current parameters in canonical form (NumPy)."""
        return self.model.canonical_params()
