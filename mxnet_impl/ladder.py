"""fastbook chapter 12's LMModel1-7 in MXNet Gluon: pure forwards over explicit parameters (state
in, state out), fastai's `fit_one_cycle` optimizer (a Gluon optimizer driven by two
`mx.lr_scheduler.LRScheduler`s, one for lr and one for beta1), AR/TAR, and a trainer with
`step` and `evaluate`.

ids `(B, T)` -> embedded `(T, B, H)` -> models 1-4: fastbook's `h = relu((h + x_t) @ W_hh + b_h)`
(1 written out, 2-4 through `layers.run_direction`); 5-7: `gluon.rnn.RNN/LSTM` through
`layers` -> logits `(B, V)` (models 1-3) or `(B, T, V)` (4-7). States: the contract's list, one
`(B, H)` entry (LSTM `(H, C)`) per layer; None means zeros. Model 7 ties the output weight to
the embedding: one Gluon `Parameter`, the `nd.Embedding` table and the `FullyConnected` weight.
`dtype` ("float32", as fastbook, or "float64") is that of every parameter, state, dropout mask
and Adam moment.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Dict

import numpy as np

from common.config import LMConfig
from common.ladder import (BETA2, EPS, Forward, LadderSpec, OneCycle, dropout_keep, layer_spec,
                           map_state)
from common.params import Params

from . import lm
from ._mx import mx
from .arrays import from_numpy, ids_in, to_numpy
from .devices import resolve_device
from .layers import builtin_forward, run_direction
from .model import Model, build_model
from .trainer import Trainer

nd = mx.nd
LOOP_CODE_PATH = "Python loop over mx.nd (layers.run_direction), imperative"


def embed(p, ids):
    """`ids: (B, T)` -> `(T, B, H)` rows of `embedding (V, H)`."""
    V, H = p["embedding"].shape
    return nd.Embedding(ids.T, p["embedding"], input_dim=V, output_dim=H,
                        dtype=np.dtype(p["embedding"].dtype).name)


def dense(x, W_in_out, b):
    """`x @ W + b` for `W: (in, out)`, on oneDNN's FullyConnected (mxnet_impl.lm.output_layer)."""
    return nd.FullyConnected(x, W_in_out.T, b, num_hidden=W_in_out.shape[1], flatten=False)


def relu_step(p, x, h):
    """fastbook's hidden update: `h' = relu((h + x) @ W_hh + b_h)`; x, h: (B, H)."""
    return nd.relu(dense(h + x, p["W_hh"], p["b_h"]))


def unrolled3(p, ids):
    """LMModel1, written out as fastbook does: ids (B, 3) -> logits (B, V)."""
    x = embed(p, ids)
    h = nd.relu(dense(x[0], p["W_hh"], p["b_h"]))
    h = relu_step(p, x[1], h)
    h = relu_step(p, x[2], h)
    return dense(h, p["W_hq"], p["b_q"])


def relu_loop(p, ids, state):
    """The loop of LMModel2-4: ids (B, T), state [h (B, H)] or None -> (Y (T, B, H), [h'])."""
    x = embed(p, ids)
    h = nd.zeros(x.shape[1:], ctx=x.context, dtype=x.dtype) if state is None else state[0]
    Y, h = run_direction(relu_step, p, x, h)
    return Y, [h]


def recurrent(spec: LadderSpec, p, module, ids, state, keep):
    """LMModel5-7: the built-in stack -> logits (B, T, V), raw and dropped-out outputs."""
    x = embed(p, ids)
    raw, finals = builtin_forward(layer_spec(spec, x.shape[-1]), module, x, state)
    out = raw if keep is None else raw * keep / (1 - spec.dropout)  # inverted dropout
    V = p["b_q"].shape[0]
    if spec.tied:  # FullyConnected's weight is (out, in) = (V, H): the embedding table itself
        logits = nd.FullyConnected(out, p["embedding"], p["b_q"], num_hidden=V, flatten=False)
    else:
        logits = dense(out, p["W_hq"], p["b_q"])
    return Forward(nd.swapaxes(logits, 0, 1), finals, raw, out)


def forward(spec: LadderSpec, p, module, ids, state=None, keep=None) -> Forward:
    """Any rung's forward. `p`: canonical nd arrays (models 5-7: the head; the stack is the
    Gluon block `module`);
    `keep`: a training step's dropout mask `(T, B, H)` (common.ladder.dropout_keep), else None."""
    if spec.arch == "unrolled3":
        return Forward(unrolled3(p, ids), None)
    if spec.builtin:
        return recurrent(spec, p, module, ids, state, keep)
    Y, finals = relu_loop(p, ids, None if spec.arch == "loop3" else state)
    if spec.arch == "window":
        return Forward(nd.swapaxes(dense(Y, p["W_hq"], p["b_q"]), 0, 1), finals)
    return Forward(dense(Y[-1], p["W_hq"], p["b_q"]), None if spec.arch == "loop3" else finals)


def token_nll(logits, targets):
    """Negative log-likelihood of every position: logits (..., V), targets (...) -> (...)."""
    return -nd.pick(nd.log_softmax(logits, axis=-1), targets, axis=-1)


def ar_tar(raw, out, alpha: float, beta: float):
    """fastai's RNNRegularizer on (T, B, H): alpha * mean(out**2) + beta * mean(diff_t(raw)**2)."""
    return alpha * nd.square(out).mean() + beta * nd.square(raw[1:] - raw[:-1]).mean()


def detach(state):
    return None if state is None else lm.detach_state(state)


# ---------------------------------------------------------------- models and optimizer

def build(spec: LadderSpec, params: Params, device, dtype: str = "float32") -> Model:
    """A `Model` holding `params` (NumPy) exactly, in `dtype` on `device` (an `mx.Context`):
    models 1-4 canonical `Parameter`s (impl "loop"), 5-7 `lm.build_lm`'s (the head canonical,
    the stack in Gluon's fused layer)."""
    if spec.builtin:
        V, H = params["embedding"].shape
        cfg = LMConfig(spec.arch, "builtin", V, H, spec.num_layers, embed_size=H)
        return lm.build_lm(cfg, params, dtype, device)
    return build_model(spec, "loop", params, dtype, device, LOOP_CODE_PATH)


class OneCycleScheduler(mx.lr_scheduler.LRScheduler):
    """fastai's `combined_cos(pct_start, start, middle, end)` as an MXNet LRScheduler.

    MXNet calls it with `num_update`, the 1-based number of the update being made; update n
    gets fastai's value at pos = (n - 1) / total_steps. Used for lr and for Adam's beta1.
    """

    def __init__(self, start, middle, end, total_steps, pct_start=0.25):
        super().__init__(base_lr=middle)
        self.start, self.middle, self.end = start, middle, end
        self.total_steps, self.pct_start = total_steps, pct_start

    def __call__(self, num_update):
        pos, pct = (num_update - 1) / self.total_steps, self.pct_start
        if pos < pct:
            a, b, frac = self.start, self.middle, pos / pct
        else:
            a, b, frac = self.middle, self.end, (pos - pct) / (1 - pct)
        return a + (1 + math.cos(math.pi * (1 - frac))) * (b - a) / 2


class FastaiAdam(mx.optimizer.Optimizer):
    """fastai's Adam: `p *= 1 - lr * wd` (decoupled, `Parameter.wd_mult` scales wd), then
    `p -= lr / (1 - beta1**t) * m / (sqrt(v / (1 - beta2**t)) + eps)`.

    Gluon's own Adam folds wd into the gradient (L2) and eps into a bias-corrected step, and its
    beta1 is a constant; here `mom_scheduler(num_update)` gives beta1 at every update.
    """

    def __init__(self, lr_scheduler, mom_scheduler, wd=0.0, beta2=BETA2, epsilon=EPS):
        super().__init__(learning_rate=None, lr_scheduler=lr_scheduler, wd=wd)
        self.mom_scheduler, self.beta2, self.epsilon = mom_scheduler, beta2, epsilon

    def create_state(self, index, weight):
        zeros = lambda: nd.zeros(weight.shape, weight.context, dtype=weight.dtype)
        return zeros(), zeros()

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd, t = self._get_lr(index), self._get_wd(index), self._index_update_count[index]
        beta1, beta2 = self.mom_scheduler(self.num_update), self.beta2
        grad = grad * self.rescale_grad
        mean, var = state
        mean[:] = beta1 * mean + (1 - beta1) * grad
        var[:] = beta2 * var + (1 - beta2) * nd.square(grad)
        step = mean / (nd.sqrt(var / (1 - beta2 ** t)) + self.epsilon)
        weight[:] = weight * (1 - lr * wd) - (lr / (1 - beta1 ** t)) * step


def make_optimizer(leaves: Dict[str, Any], no_decay, wd: float, sched: OneCycle):
    """A Gluon Trainer over `leaves` (name -> Parameter) with `FastaiAdam` on `sched`;
    `no_decay` keys get `wd_mult = 0` (fastai's `wd_bn_bias=False`). Returns (optimizer,
    scheduler), the scheduler None: the schedules live inside `FastaiAdam`, which MXNet calls
    with the number of each update."""
    lr = sched.lr_max
    lrs = OneCycleScheduler(lr / sched.div, lr, lr / sched.div_final, sched.total_steps,
                            sched.pct_start)
    moms = OneCycleScheduler(*sched.moms, sched.total_steps, sched.pct_start)
    for name, param in leaves.items():
        param.wd_mult = 0.0 if name in no_decay else 1.0
    return mx.gluon.Trainer(list(leaves.values()), FastaiAdam(lrs, moms, wd)), None


def schedule_trace(sched: OneCycle, grads=None, wd: float = 0.0, dtype: str = "float32"):
    """Run the optimizer on one weight (starting at 1.0 in `dtype`, gradients `grads`, default
    ones) for `sched.total_steps` steps -> (lr, beta1, weight after each step), (N,) each."""
    ctx = mx.cpu()
    param = build_model(None, "loop", {"w": np.ones(1, dtype)}, dtype, ctx, "").params["w"]
    trainer, _ = make_optimizer({"w": param}, (), wd, sched)
    opt = trainer._optimizer  # the schedules are read where the optimizer reads them
    grads = np.ones(sched.total_steps) if grads is None else grads
    lrs, moms, weights = [], [], []
    for g in grads:
        with mx.autograd.record():
            loss = (param.data(ctx) * float(g)).sum()  # d loss / d w = g
        loss.backward()
        trainer.step(1)
        lrs.append(opt.lr_scheduler(opt.num_update))
        moms.append(opt.mom_scheduler(opt.num_update))
        weights.append(param.data(ctx).asscalar())
    return np.array(lrs), np.array(moms), np.array(weights)


# ---------------------------------------------------------------- trainer

def make_trainer(spec: LadderSpec, params: Params, sched: OneCycle, device="cpu",
                 seed: int = 0, dtype: str = "float32") -> Trainer:
    """Trains one rung in place: `step(x, y, state) -> (loss, state)`, `evaluate(x, y, state)`.

    x: (B, 3) or (B, T) ids; y: (B,) or (B, T). The loss returned is the mean cross-entropy;
    model 7 adds AR/TAR to what is differentiated (fastai adds them to `loss_grad` only). States
    go out as detached nd arrays, opaque to the caller, and come back as they went; None means
    zeros. Dropout masks: `dropout_keep(seed, step number)`, the same in every framework.
    `dtype`: of parameters, states, masks, Adam's moments. `evaluate`: no dropout, no update ->
    (summed cross-entropy, correct predictions, positions, state).
    """
    model = build(spec, params, resolve_device(device), dtype)
    hidden, steps = params["embedding"].shape[1], itertools.count()

    def loss(model, x, y, state=None):
        keep = dropout_keep(spec, np.shape(x), hidden, seed, next(steps), dtype)
        keep = None if keep is None else model.array(keep)
        fwd = forward(spec, model.arrays(), model.module, model.ids_in(x), state, keep)
        value = token_nll(fwd.logits, model.ids_in(y)).mean()
        total = value + ar_tar(fwd.raw, fwd.out, spec.alpha, spec.beta) \
            if spec.alpha or spec.beta else value
        return value, total, detach(fwd.state)

    def evaluate(model, x, y, state=None):
        fwd = forward(spec, model.arrays(), model.module, model.ids_in(x), state)
        y = model.ids_in(y)
        loss_sum = float(token_nll(fwd.logits, y).sum().asscalar())
        pred = nd.argmax(fwd.logits, axis=-1).astype("int64")
        correct = int((pred == y).sum().asscalar())
        return loss_sum, correct, int(y.size), fwd.state

    # every leaf, both biases of the built-ins included (common/ladder.py: as fastbook)
    optimizer, scheduler = make_optimizer(model.leaves(), spec.no_decay, spec.wd, sched)
    return Trainer(model, loss, optimizer, scheduler=scheduler, evaluate=evaluate)


# ---------------------------------------------------------------- NumPy helpers for tests

def forward_numpy(spec: LadderSpec, params: Params, x, state=None, train=False, seed=0,
                  dtype: str = "float32"):
    """One forward on fresh parameters in `dtype`, NumPy in (ids, state) and out -> Forward of
    NumPy."""
    ctx = mx.cpu()
    model = build(spec, params, ctx, dtype)
    state = map_state(lambda a: from_numpy(np.asarray(a), dtype, ctx), state)
    keep = (dropout_keep(spec, np.shape(x), params["embedding"].shape[1], seed, 0, dtype)
            if train else None)
    keep = None if keep is None else from_numpy(keep, dtype, ctx)
    fwd = forward(spec, model.arrays(), model.module, ids_in(x, ctx), state, keep)
    return Forward(to_numpy(fwd.logits), to_numpy(fwd.state), to_numpy(fwd.raw), to_numpy(fwd.out))


def ar_tar_numpy(raw, out, alpha, beta) -> float:
    as_nd = lambda a: from_numpy(np.asarray(a), "float64", mx.cpu())
    return float(ar_tar(as_nd(raw), as_nd(out), alpha, beta).asscalar())


def loss_grads(spec: LadderSpec, params: Params, x, y, dtype: str = "float32"):
    """Mean cross-entropy (dropout off, no AR/TAR) and its canonical gradients (NumPy), in
    `dtype`."""
    ctx = mx.cpu()
    model = build(spec, params, ctx, dtype)
    ids, targets = ids_in(x, ctx), ids_in(y, ctx)
    with mx.autograd.record():
        loss = token_nll(forward(spec, model.arrays(), model.module, ids).logits, targets).mean()
    loss.backward()
    return float(loss.asscalar()), model.canonical_grads()
