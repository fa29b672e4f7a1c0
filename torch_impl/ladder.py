"""fastbook chapter 12's LMModel1-7 in PyTorch: pure forwards over explicit parameters (state in,
state out), fastai's `fit_one_cycle` optimizer (AdamW with torch's `OneCycleLR` driving lr and
beta1), AR/TAR, and a trainer with `step` and `evaluate`.

ids `(B, T)` -> embedded `(T, B, H)` -> models 1-4: fastbook's `h = relu((h + x_t) @ W_hh + b_h)`
(1 written out, 2-4 through `layers.run_direction`); 5-7: `nn.RNN/LSTM` through `layers`
-> logits `(B, V)` (models 1-3) or `(B, T, V)` (4-7). States: the contract's list, one `(B, H)`
entry (LSTM `(H, C)`) per layer; None means zeros. Model 7 ties the output weight to the
embedding: one leaf tensor, used as `embedding` and as `embedding.T`. `dtype` ("float32", as
fastbook, or "float64") is that of every parameter, state, dropout mask and Adam moment.
"""
from __future__ import annotations

import itertools
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from common.config import LMConfig
from common.ladder import (BETA2, EPS, Forward, LadderSpec, OneCycle, dropout_keep, layer_spec,
                           map_state)
from common.params import Params

from . import lm
from .arrays import to_numpy
from .devices import TORCH_DTYPES, resolve_device
from .layers import builtin_forward, run_direction
from .model import Model, build_model
from .trainer import Trainer

LOOP_CODE_PATH = "Python loop over torch ops (layers.run_direction)"


def relu_step(p, x, h):
    """fastbook's hidden update: `h' = relu((h + x) @ W_hh + b_h)`; x, h: (B, H)."""
    return F.relu((h + x) @ p["W_hh"] + p["b_h"])


def unrolled3(p, ids):
    """LMModel1, written out as fastbook does: ids (B, 3) -> logits (B, V)."""
    x = F.embedding(ids.T, p["embedding"])           # (3, B, H)
    h = F.relu(x[0] @ p["W_hh"] + p["b_h"])
    h = relu_step(p, x[1], h)
    h = relu_step(p, x[2], h)
    return h @ p["W_hq"] + p["b_q"]


def relu_loop(p, ids, state):
    """The loop of LMModel2-4: ids (B, T), state [h (B, H)] or None -> (Y (T, B, H), [h'])."""
    x = F.embedding(ids.T, p["embedding"])
    h = x.new_zeros(x.shape[1:]) if state is None else state[0]
    Y, h = run_direction(relu_step, p, x, h)
    return Y, [h]


def recurrent(spec: LadderSpec, p, module, ids, state, keep):
    """LMModel5-7: the built-in stack -> logits (B, T, V), raw and dropped-out outputs."""
    x = F.embedding(ids.T, p["embedding"])
    raw, finals = builtin_forward(layer_spec(spec, x.shape[-1]), module, x, state)
    out = raw if keep is None else raw * keep / (1 - spec.dropout)  # inverted dropout
    W_out = p["embedding"].T if spec.tied else p["W_hq"]
    return Forward((out @ W_out + p["b_q"]).transpose(0, 1), finals, raw, out)


def forward(spec: LadderSpec, p, module, ids, state=None, keep=None) -> Forward:
    """Any rung's forward. `p`: canonical tensors (models 5-7: the head; the stack is `module`);
    `keep`: a training step's dropout mask `(T, B, H)` (common.ladder.dropout_keep), else None."""
    if spec.arch == "unrolled3":
        return Forward(unrolled3(p, ids), None)
    if spec.builtin:
        return recurrent(spec, p, module, ids, state, keep)
    Y, finals = relu_loop(p, ids, None if spec.arch == "loop3" else state)
    if spec.arch == "window":
        return Forward((Y @ p["W_hq"] + p["b_q"]).transpose(0, 1), finals)
    return Forward(Y[-1] @ p["W_hq"] + p["b_q"], None if spec.arch == "loop3" else finals)


def cross_entropy(logits, targets, reduction="mean"):
    """Cross-entropy over every position: logits (B, V) or (B, T, V), targets (B,) or (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction=reduction)


def ar_tar(raw, out, alpha: float, beta: float):
    """fastai's RNNRegularizer on (T, B, H): alpha * mean(out**2) + beta * mean(diff_t(raw)**2)."""
    return alpha * out.pow(2).mean() + beta * (raw[1:] - raw[:-1]).pow(2).mean()


def detach(state):
    return map_state(torch.Tensor.detach, state)


# ---------------------------------------------------------------- models and optimizer

def build(spec: LadderSpec, params: Params, device, dtype: str = "float32") -> Model:
    """A `Model` holding `params` (NumPy) exactly, in `dtype`: models 1-4 canonical leaves
    (impl "loop"), 5-7 `lm.build_lm`'s (the head canonical, the stack in `nn.RNN`/`nn.LSTM`)."""
    if spec.builtin:
        V, H = params["embedding"].shape
        cfg = LMConfig(spec.arch, "builtin", V, H, spec.num_layers, embed_size=H)
        return lm.build_lm(cfg, params, TORCH_DTYPES[dtype], device)
    return build_model(spec, "loop", params, TORCH_DTYPES[dtype], device, LOOP_CODE_PATH)


def one_cycle_scheduler(optimizer, sched: OneCycle):
    """torch's `OneCycleLR` on fastai's time axis, driving lr and Adam's beta1.

    `OneCycleLR` ends its phases at steps `pct_start * total - 1` and `total - 1`; fastai at
    `pct_start * N` and `N` (pos = i/N). total_steps = N + 1 with pct_start' = (pct_start * N +
    1) / (N + 1) puts torch's phase ends exactly there, so step i gets fastai's value.
    """
    if sched.moms[0] != sched.moms[2]:
        raise ValueError(f"OneCycleLR cycles momentum max -> base -> max; {sched.moms} is not")
    N = sched.total_steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=sched.lr_max, total_steps=N + 1,
        pct_start=(sched.pct_start * N + 1) / (N + 1), anneal_strategy="cos",
        cycle_momentum=True, base_momentum=sched.moms[1], max_momentum=sched.moms[0],
        div_factor=sched.div, final_div_factor=sched.div_final / sched.div, three_phase=False)


def make_optimizer(leaves: Dict[str, torch.Tensor], no_decay, wd: float, sched: OneCycle):
    """fastai's Adam (decoupled wd, betas (mom, 0.99), eps 1e-5) as `AdamW`, plus its schedule.

    `no_decay` keys get wd 0 (fastai's `wd_bn_bias=False`). Returns (optimizer, scheduler).
    """
    groups = [{"params": [v for k, v in leaves.items() if k not in no_decay], "weight_decay": wd},
              {"params": [v for k, v in leaves.items() if k in no_decay], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=sched.lr_max,
                                  betas=(sched.moms[0], BETA2), eps=EPS)
    return optimizer, one_cycle_scheduler(optimizer, sched)


def schedule_trace(sched: OneCycle, grads=None, wd: float = 0.0, dtype: str = "float32"):
    """Run the optimizer on one weight (starting at 1.0 in `dtype`, gradients `grads`, default
    ones) for `sched.total_steps` steps -> (lr, beta1, weight after each step), (N,) each."""
    param = torch.ones(1, dtype=TORCH_DTYPES[dtype], requires_grad=True)
    optimizer, scheduler = make_optimizer({"w": param}, (), wd, sched)
    lrs, moms, weights = [], [], []
    for g in (np.ones(sched.total_steps) if grads is None else grads):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        moms.append(group["betas"][0])
        param.grad = torch.full((1,), float(g), dtype=param.dtype)
        optimizer.step()
        scheduler.step()
        weights.append(param.item())
    return np.array(lrs), np.array(moms), np.array(weights)


# ---------------------------------------------------------------- trainer

def make_trainer(spec: LadderSpec, params: Params, sched: OneCycle, device="cpu",
                 seed: int = 0, dtype: str = "float32") -> Trainer:
    """Trains one rung in place: `step(x, y, state) -> (loss, state)`, `evaluate(x, y, state)`.

    x: (B, 3) or (B, T) ids; y: (B,) or (B, T). The loss returned is the mean cross-entropy;
    model 7 adds AR/TAR to what is differentiated (fastai adds them to `loss_grad` only). States
    go out as detached tensors, opaque to the caller, and come back as they went; None means
    zeros. Dropout masks: `dropout_keep(seed, step number)`, the same in every framework.
    `dtype`: of parameters, states, masks, Adam's moments. `evaluate`: no dropout, no update ->
    (summed cross-entropy, correct predictions, positions, state).
    """
    model = build(spec, params, resolve_device(device), dtype)
    hidden, steps = params["embedding"].shape[1], itertools.count()

    def loss(model, x, y, state=None):
        keep = dropout_keep(spec, np.shape(x), hidden, seed, next(steps), dtype)
        keep = None if keep is None else torch.as_tensor(keep, device=model.device)
        fwd = forward(spec, model.params, model.module, model.ids_in(x), state, keep)
        value = cross_entropy(fwd.logits, model.ids_in(y))
        total = value + ar_tar(fwd.raw, fwd.out, spec.alpha, spec.beta) \
            if spec.alpha or spec.beta else value
        return value, total, detach(fwd.state)

    def evaluate(model, x, y, state=None):
        fwd = forward(spec, model.params, model.module, model.ids_in(x), state)
        y = model.ids_in(y)
        loss_sum = cross_entropy(fwd.logits, y, reduction="sum").item()
        correct = (fwd.logits.argmax(-1) == y).sum().item()
        return loss_sum, int(correct), int(y.numel()), fwd.state

    # every leaf, both biases of the built-ins included (common/ladder.py: as fastbook)
    optimizer, scheduler = make_optimizer(model.leaves(), spec.no_decay, spec.wd, sched)
    return Trainer(model, loss, optimizer, scheduler=scheduler, evaluate=evaluate)


# ---------------------------------------------------------------- NumPy helpers for tests

def forward_numpy(spec: LadderSpec, params: Params, x, state=None, train=False, seed=0,
                  dtype: str = "float32"):
    """One forward on fresh parameters in `dtype`, NumPy in (ids, state) and out -> Forward of
    NumPy."""
    model = build(spec, params, torch.device("cpu"), dtype)
    state = map_state(lambda a: torch.as_tensor(a, dtype=TORCH_DTYPES[dtype]), state)
    keep = (dropout_keep(spec, np.shape(x), params["embedding"].shape[1], seed, 0, dtype)
            if train else None)
    keep = None if keep is None else torch.as_tensor(keep)
    with torch.no_grad():
        fwd = forward(spec, model.params, model.module, torch.as_tensor(x), state, keep)
    return Forward(to_numpy(fwd.logits), to_numpy(fwd.state), to_numpy(fwd.raw), to_numpy(fwd.out))


def ar_tar_numpy(raw, out, alpha, beta) -> float:
    return float(ar_tar(torch.as_tensor(raw), torch.as_tensor(out), alpha, beta))


def loss_grads(spec: LadderSpec, params: Params, x, y, dtype: str = "float32"):
    """Mean cross-entropy (dropout off, no AR/TAR) and its canonical gradients (NumPy), in
    `dtype`."""
    model = build(spec, params, torch.device("cpu"), dtype)
    fwd = forward(spec, model.params, model.module, torch.as_tensor(x))
    loss = cross_entropy(fwd.logits, torch.as_tensor(y))
    loss.backward()
    grads = {k: to_numpy(v.grad) for k, v in model.leaves().items()}
    return loss.item(), model.canonical(grads, grads=True)
