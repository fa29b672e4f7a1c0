"""fastbook chapter 12's LMModel1-7 in JAX: pure forwards over a parameter pytree (state in,
state out), fastai's `fit_one_cycle` optimizer (optax's `adamw` chain under
`inject_hyperparams`, lr from `cosine_onecycle_schedule`, beta1 from
`piecewise_interpolate_schedule`, the built-ins' biases stepped twice as far: common/ladder.py),
AR/TAR, and the one trainer (trainer.py) with this module's loss, whose step and evaluation
are jitted.

ids `(B, T)` -> embedded `(T, B, H)` -> models 1-4: fastbook's `h = relu((h + x_t) @ W_hh + b_h)`
(1 written out, 2-4 through `layers.run_direction`, a `lax.scan`); 5-7: Flax's `nn.RNN` over
`SimpleCell`/`OptimizedLSTMCell` through `layers.builtin_forward` -> logits `(B, V)` (models
1-3) or `(B, T, V)` (4-7). States: the contract's list, one `(B, H)` entry (LSTM `(H, C)`) per
layer; None means zeros. The pytree holds canonical names; models 5-7 rename the stack's keys to
Flax's (one array per key, convert.py). Model 7 has no `W_hq`: its output weight is the
`embedding` leaf, transposed. `dtype` ("float32", as fastbook, or "float64") is that of every
parameter, state, dropout mask, Adam moment and hyperparameter; every call runs inside
`devices.compute_scope` (x64 only for float64, as the rest of jax_impl) and creates its arrays
there.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.ladder import (BETA2, EPS, Forward, LadderSpec, OneCycle, doubled_bias_keys,
                           dropout_keep, layer_spec, map_state)
from common.params import Params

from .arrays import to_numpy
from .convert import name_map
from .devices import compute_scope, resolve_device
from .layers import builtin_code_path, builtin_forward, run_direction, scratch_code_path
from .model import Model, build_model
from .trainer import Optimizer, Trainer


def embed(p, ids):
    """`ids: (B, T)` -> `(T, B, H)` rows of `embedding (V, H)`."""
    return jnp.take(p["embedding"], ids.T, axis=0)


def relu_step(p, x, h):
    """fastbook's hidden update: `h' = relu((h + x) @ W_hh + b_h)`; x, h: (B, H)."""
    return jax.nn.relu((h + x) @ p["W_hh"] + p["b_h"])


def unrolled3(p, ids):
    """LMModel1, written out as fastbook does: ids (B, 3) -> logits (B, V)."""
    x = embed(p, ids)
    h = jax.nn.relu(x[0] @ p["W_hh"] + p["b_h"])
    h = relu_step(p, x[1], h)
    h = relu_step(p, x[2], h)
    return h @ p["W_hq"] + p["b_q"]


def relu_loop(p, ids, state):
    """The loop of LMModel2-4: ids (B, T), state [h (B, H)] or None -> (Y (T, B, H), [h'])."""
    x = embed(p, ids)
    h = jnp.zeros(x.shape[1:], x.dtype) if state is None else state[0]
    Y, h = run_direction(relu_step, p, x, h)
    return Y, [h]


def recurrent(spec: LadderSpec, p, ids, state, keep):
    """LMModel5-7: Flax's stack -> logits (B, T, V), raw and dropped-out outputs."""
    x = embed(p, ids)
    lspec = layer_spec(spec, x.shape[-1])
    native = {name: p[key_] for key_, name in name_map(lspec).items()}
    raw, finals = builtin_forward(lspec, native, x, state)
    out = raw if keep is None else raw * keep / (1 - spec.dropout)  # inverted dropout
    W_out = p["embedding"].T if spec.tied else p["W_hq"]
    return Forward(jnp.swapaxes(out @ W_out + p["b_q"], 0, 1), finals, raw, out)


def forward(spec: LadderSpec, p, ids, state=None, keep=None) -> Forward:
    """Any rung's forward over the canonical pytree `p`; `keep`: a training step's dropout mask
    `(T, B, H)` (common.ladder.dropout_keep), else None."""
    if spec.arch == "unrolled3":
        return Forward(unrolled3(p, ids), None)
    if spec.builtin:
        return recurrent(spec, p, ids, state, keep)
    Y, finals = relu_loop(p, ids, None if spec.arch == "loop3" else state)
    if spec.arch == "window":
        return Forward(jnp.swapaxes(Y @ p["W_hq"] + p["b_q"], 0, 1), finals)
    return Forward(Y[-1] @ p["W_hq"] + p["b_q"], None if spec.arch == "loop3" else finals)


def token_nll(logits, targets):
    """Negative log-likelihood of every position: logits (..., V), targets (...) -> (...)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def ar_tar(raw, out, alpha: float, beta: float):
    """fastai's RNNRegularizer on (T, B, H): alpha * mean(out**2) + beta * mean(diff_t(raw)**2)."""
    return alpha * jnp.mean(out ** 2) + beta * jnp.mean((raw[1:] - raw[:-1]) ** 2)


def zero_state(spec: LadderSpec, batch: int, hidden: int, dtype: str = "float32"):
    """The all-zero state of a stateful rung (None for models 1-2); call inside the scope."""
    if not spec.stateful:
        return None
    z = lambda: jnp.zeros((batch, hidden), dtype)
    return [(z(), z()) if spec.arch == "lstm" else z() for _ in range(spec.num_layers)]


# ---------------------------------------------------------------- optimizer

def _time_scale(sched: OneCycle) -> int:
    """k such that pct_start * k * N is a whole number: optax's boundaries are integer steps,
    so the schedules run on a time axis k times finer and are read at k * count."""
    k = Fraction(sched.pct_start).limit_denominator(10 ** 6).denominator
    if (Fraction(sched.pct_start) * k * sched.total_steps).denominator != 1:
        raise ValueError(f"pct_start {sched.pct_start} has no exact integer boundary")
    return k


def schedules(sched: OneCycle):
    """(lr(count), beta1(count)): optax's own schedules on fastai's time axis (pos = count/N).

    optax's step count is an int32 array, and JAX makes int32 arithmetic inexact in float32
    even under x64: the count is cast to the default float first (float64 in x64 mode, exact
    for any step count), so a float64 run gets float64 schedules."""
    k, (m0, m1, m2) = _time_scale(sched), sched.moms
    total, middle = k * sched.total_steps, int(round(sched.pct_start * k * sched.total_steps))
    lr = optax.cosine_onecycle_schedule(total, sched.lr_max, sched.pct_start, sched.div,
                                        sched.div_final / sched.div)
    mom = optax.piecewise_interpolate_schedule("cosine", m0, {middle: m1 / m0, total: m2 / m1})
    at = lambda count: k * jnp.asarray(count, jnp.result_type(float))
    return (lambda count: lr(at(count))), (lambda count: mom(at(count)))


def fastai_adam(learning_rate, b1, b2, eps, weight_decay, decay_mask, double_mask):
    """optax's `adamw` chain (Adam's step, decoupled decay, -lr) with Adam's step doubled on
    the `double_mask` keys before the decay is added: the update of a bias that stands for
    two native biases (common/ladder.py)."""
    return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                       optax.masked(optax.scale(2.0), double_mask),
                       optax.add_decayed_weights(weight_decay, decay_mask),
                       optax.scale_by_learning_rate(learning_rate))


def make_optimizer(params, no_decay, wd: float, sched: OneCycle, doubled=()):
    """fastai's Adam (decoupled wd, b2 0.99, eps 1e-5) with lr and b1 scheduled through
    `inject_hyperparams`; `no_decay` keys are masked out of the decay, `doubled` keys take
    twice Adam's step."""
    lr, mom = schedules(sched)
    return optax.inject_hyperparams(fastai_adam)(
        learning_rate=lr, b1=mom, b2=BETA2, eps=EPS, weight_decay=wd,
        decay_mask={name: name not in no_decay for name in params},
        double_mask={name: name in doubled for name in params})


def schedule_trace(sched: OneCycle, grads=None, wd: float = 0.0, dtype: str = "float32"):
    """Run the optimizer on one weight (starting at 1.0 in `dtype`, gradients `grads`, default
    ones) for `sched.total_steps` steps -> (lr, beta1, weight after each step), (N,) each.
    optax's hyperparameters take the weight's dtype."""
    with compute_scope(resolve_device("cpu"), dtype):
        params = {"w": jnp.ones((), dtype)}
        tx = make_optimizer(params, (), wd, sched)
        update = jax.jit(tx.update)
        state, lrs, moms, weights = tx.init(params), [], [], []
        for g in (np.ones(sched.total_steps) if grads is None else grads):
            updates, state = update({"w": jnp.asarray(g, dtype)}, state, params)
            params = optax.apply_updates(params, updates)
            lrs.append(float(state.hyperparams["learning_rate"]))  # the values this update used
            moms.append(float(state.hyperparams["b1"]))
            weights.append(float(params["w"]))
    return np.array(lrs), np.array(moms), np.array(weights)


@dataclass(frozen=True)
class _FastaiAdam:
    """`make_optimizer`'s transform as a static argument of trainer.train_step: equal for
    equal names, masks and schedule, so trainers of one rung and schedule share an executable.
    Its rates are scheduled inside (optax's step count), so it takes no `hyper`."""

    names: Tuple[str, ...]
    no_decay: Tuple[str, ...]
    wd: float
    sched: OneCycle
    doubled: Tuple[str, ...]

    def __call__(self, hyper) -> optax.GradientTransformation:
        return make_optimizer(dict.fromkeys(self.names), self.no_decay, self.wd, self.sched,
                              self.doubled)


# ---------------------------------------------------------------- models and trainer

def build(spec: LadderSpec, params: Params, device, dtype: str = "float32") -> Model:
    """A `Model` holding `params` (NumPy) exactly, in `dtype`, on `device` (a `jax.Device`):
    `cfg` the rung's spec, impl "loop" (models 1-4) or "builtin" (5-7). Every model's pytree
    keeps canonical names; models 5-7 hand the stack to Flax under its names inside the forward
    (`recurrent`, a rename that jit makes free)."""
    hidden = params["embedding"].shape[1]
    path = (builtin_code_path(layer_spec(spec, hidden), device.platform) if spec.builtin
            else scratch_code_path(device.platform))
    return build_model(spec, "builtin" if spec.builtin else "loop", params, dtype, device, path)


def _loss(spec: LadderSpec, params, x, y, state, keep):
    """The trainer's loss, traced: `(mean cross-entropy, what is differentiated: model 7 adds
    AR/TAR, final states)`; `keep`: the step's dropout mask or None."""
    fwd = forward(spec, params, x, state, keep)
    value = token_nll(fwd.logits, y).mean()
    total = value + ar_tar(fwd.raw, fwd.out, spec.alpha, spec.beta) \
        if spec.alpha or spec.beta else value
    return value, total, jax.lax.stop_gradient(fwd.state)


@functools.partial(jax.jit, static_argnums=0)
def _eval_step(spec: LadderSpec, params, x, y, state):
    fwd = forward(spec, params, x, state)
    correct = jnp.sum(jnp.argmax(fwd.logits, axis=-1) == y)
    return token_nll(fwd.logits, y).sum(), correct, fwd.state


def _ids_and_state(model: Model, x, y, state):
    """ids as int32 arrays and the state (None -> zeros); call inside the scope."""
    if state is None:
        state = zero_state(model.cfg, len(x), model.params["embedding"].shape[1], model.dtype)
    return jnp.asarray(x, jnp.int32), jnp.asarray(y, jnp.int32), state


def _evaluate(model: Model, x, y, state=None):
    """No dropout, no update -> (summed cross-entropy, correct predictions, positions, state)."""
    loss_sum, correct, state = _eval_step(model.cfg, model.params,
                                          *_ids_and_state(model, x, y, state))
    return float(loss_sum), int(correct), int(np.size(y)), state


def make_trainer(spec: LadderSpec, params: Params, sched: OneCycle, device="cpu",
                 seed: int = 0, dtype: str = "float32") -> Trainer:
    """Trains one rung: `step(x, y, state) -> (loss, state)`, `evaluate(x, y, state)`; the
    parameters are the model's explicit pytree, replaced at every step (trainer.train_step,
    jitted, as is the evaluation).

    x: (B, 3) or (B, T) ids; y: (B,) or (B, T). The loss returned is the cross-entropy; model 7
    adds AR/TAR to what is differentiated (fastai adds them to `loss_grad` only). States are
    device arrays, opaque to the caller; None means zeros. Dropout masks: `dropout_keep(seed,
    step number)`, the same in every framework. `dtype`: of parameters, states, masks, Adam's
    moments and hyperparameters. `evaluate`: no dropout, no update -> (summed cross-entropy,
    correct predictions, positions, state).
    """
    model = build(spec, params, resolve_device(device), dtype)
    hidden, steps = params["embedding"].shape[1], itertools.count()

    def inputs(model, x, y, state=None):
        keep = dropout_keep(spec, np.shape(x), hidden, seed, next(steps), dtype)
        keep = None if keep is None else jnp.asarray(keep, dtype)
        return (*_ids_and_state(model, x, y, state), keep)

    # every leaf, the built-ins' doubled biases stepped twice as far (common/ladder.py)
    transform = _FastaiAdam(tuple(model.params), tuple(spec.no_decay), spec.wd, sched,
                            tuple(doubled_bias_keys(spec)))
    return Trainer(model, _loss, Optimizer(transform, {}), evaluate=_evaluate, inputs=inputs)


# ---------------------------------------------------------------- NumPy helpers for tests

def forward_numpy(spec: LadderSpec, params: Params, x, state=None, train=False, seed=0,
                  dtype: str = "float32"):
    """One forward on `params` in `dtype`, NumPy in (ids, state) and out -> Forward of NumPy."""
    with compute_scope(resolve_device("cpu"), dtype):
        p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
        state = map_state(lambda a: jnp.asarray(a, dtype), state)
        keep = (dropout_keep(spec, np.shape(x), params["embedding"].shape[1], seed, 0, dtype)
                if train else None)
        keep = None if keep is None else jnp.asarray(keep, dtype)
        fwd = forward(spec, p, jnp.asarray(x, jnp.int32), state, keep)
        return to_numpy(fwd)


def ar_tar_numpy(raw, out, alpha, beta) -> float:
    return float(ar_tar(jnp.asarray(raw), jnp.asarray(out), alpha, beta))


def loss_grads(spec: LadderSpec, params: Params, x, y, dtype: str = "float32"):
    """Mean cross-entropy (dropout off, no AR/TAR) and its canonical gradients (NumPy), in
    `dtype`."""
    with compute_scope(resolve_device("cpu"), dtype):
        p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
        mean_nll = lambda q: token_nll(forward(spec, q, jnp.asarray(x, jnp.int32)).logits,
                                       jnp.asarray(y, jnp.int32)).mean()
        value, grads = jax.value_and_grad(mean_nll)(p)
        return float(value), to_numpy(dict(grads))
