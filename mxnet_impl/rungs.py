"""The "why is the built-in faster" ladder in MXNet Gluon: d2l's scratch LSTM language model,
made faster one change at a time up to `gluon.rnn.LSTM` (common/rungs.py describes the rungs).

Every rung holds the same canonical parameters (the middle rungs in the fused layout,
common.rungs.fuse_lstm; the oneDNN and compiled rungs store its weights transposed, `(4H, in)`,
as `FullyConnected` wants them) and trains them with the same head and step: one-hot inputs,
`FullyConnected` output layer, mean cross-entropy, backward, d2l's clipping, `sgd_update`.
Only the recurrent layer differs, so a rung's speed is its layer's. The `hand_vjp` rung adds a
hand-written backward (recurrence.py), as JAX's fast path does. Gluon layers are
hybridized with `static_alloc=True, static_shape=True`, their fastest setting (docs/performance.md).
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
from typing import Callable

import numpy as np

from common.config import LMConfig
from common.errors import NotSupported
from common.params import Params, sub_params
from common.rungs import (CANONICAL_RUNGS, FUSED_KEYS, canonical_grads, check_config, fuse_lstm,
                          gate_width)

from ._mx import mx
from .arrays import from_numpy, to_numpy
from .cells import lstm_step
from .devices import device_name, resolve_device
from .layers import (builtin_code_path, builtin_forward, fast_code_path, fast_forward,
                     make_builtin, run_direction)
from .lm import HEAD_KEYS, cross_entropy, output_layer
from .model import Model, build_model
from .recurrence import (cached_blocks, make_loops, sigmoid as eltwise_sigmoid,
                         tanh as eltwise_tanh)
from .runtime import openmp_counts
from .trainer import Trainer

nd = mx.nd

HYBRIDIZE = {"static_alloc": True, "static_shape": True}
RUNGS = ("d2l", "fused", "hoisted", "onednn", "compiled", "eltwise", "hand_vjp", "fast",
         "builtin")
# rungs storing W_x, W_h as (4H, in), as FullyConnected wants them
TRANSPOSED = ("onednn", "compiled", "eltwise", "hand_vjp")
# rungs whose loop is a LoopBlock, unrolled for the sequence length
LOOP_BLOCKS = ("compiled", "eltwise")
# Engine bookkeeping in the profiler's operator table, not kernels.
NOT_KERNELS = {"DeleteVariable", "ResourceParallelRandomSetSeed", "WaitForVar"}


def lstm_pointwise(F, gates, C, n: int, eltwise: bool = False):
    """d2l's LSTM from fused pre-activations `gates: (B, 4H)` (i, f, o, c) -> `(H', C')`;
    `F` is `mx.nd` or `mx.sym`, so the hybridized rungs share it. `eltwise`: sigmoid and tanh
    through `Activation` (oneDNN's eltwise kernel) instead of `F.sigmoid` and `F.tanh`."""
    if eltwise:
        sigmoid, tanh = functools.partial(eltwise_sigmoid, F), functools.partial(eltwise_tanh, F)
    else:
        sigmoid, tanh = F.sigmoid, F.tanh
    IFO = sigmoid(F.slice_axis(gates, axis=1, begin=0, end=3 * n))
    gate = lambda k: F.slice_axis(IFO, axis=1, begin=k * n, end=(k + 1) * n)
    C = gate(1) * C + gate(0) * tanh(F.slice_axis(gates, axis=1, begin=3 * n, end=4 * n))
    return gate(2) * tanh(C), C


def fc(X, W, b=None):
    """`X W^T (+ b)` through `FullyConnected` (oneDNN on CPU): `W: (out, in)`, X `(..., in)`."""
    return nd.FullyConnected(X, W, b, num_hidden=W.shape[0], no_bias=b is None, flatten=False)


class LoopBlock(mx.gluon.HybridBlock):
    """The hoisted loop over `FullyConnected` as a HybridBlock, unrolled over `steps`:
    `(X (T, B, V), H, C)` -> `(Y (T, B, H), H, C)`. Parameters `W_x (4H, V)`, `W_h (4H, H)`, `b`."""

    def __init__(self, vocab: int, hidden: int, steps: int, dtype: str, eltwise: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.steps, self.eltwise = hidden, steps, eltwise
        with self.name_scope():
            self.W_x = self.params.get("W_x", shape=(4 * hidden, vocab), dtype=dtype)
            self.W_h = self.params.get("W_h", shape=(4 * hidden, hidden), dtype=dtype)
            self.b = self.params.get("b", shape=(4 * hidden,), dtype=dtype)

    def hybrid_forward(self, F, X, H, C, W_x, W_h, b):
        n = 4 * self.hidden
        XP = F.FullyConnected(X, W_x, b, num_hidden=n, flatten=False)
        steps = F.split(XP, num_outputs=self.steps, axis=0, squeeze_axis=True)
        steps = [steps] if self.steps == 1 else steps
        outputs = []
        for xp in steps:
            gates = xp + F.FullyConnected(H, W_h, no_bias=True, num_hidden=n, flatten=False)
            H, C = lstm_pointwise(F, gates, C, self.hidden, self.eltwise)
            outputs.append(H)
        return F.stack(*outputs, axis=0), H, C


def split_steps(XP):
    """`XP: (T, ...)` as T arrays: one `split` (its backward one concat), not T slices (whose
    backward writes T full-size gradients and sums them)."""
    T = XP.shape[0]
    return [XP[0]] if T == 1 else nd.split(XP, num_outputs=T, axis=0, squeeze_axis=True)


def d2l_layer(model, X, H, C):
    """d2l's loop over the scratch cell: `nd.dot` per gate and side."""
    Y, (H, C) = run_direction(lstm_step, sub_params(model.arrays(), "l0."), X, (H, C))
    return Y, H, C


def fused_layer(model, X, H, C):
    p, n, outputs = model.arrays(), model.cfg.hidden_size, []
    for t in range(X.shape[0]):
        H, C = lstm_pointwise(nd, nd.dot(X[t], p["W_x"]) + nd.dot(H, p["W_h"]) + p["b"], C, n)
        outputs.append(H)
    return nd.stack(*outputs, axis=0), H, C


def hoisted_layer(model, X, H, C):
    p, n, outputs = model.arrays(), model.cfg.hidden_size, []
    XP = nd.dot(X, p["W_x"]) + p["b"]  # (T, B, V) x (V, 4H): every step at once
    for xp in split_steps(XP):
        H, C = lstm_pointwise(nd, xp + nd.dot(H, p["W_h"]), C, n)
        outputs.append(H)
    return nd.stack(*outputs, axis=0), H, C


def onednn_layer(model, X, H, C):
    p, n, outputs = model.arrays(), model.cfg.hidden_size, []
    for xp in split_steps(fc(X, p["W_x"], p["b"])):
        H, C = lstm_pointwise(nd, xp + fc(H, p["W_h"]), C, n)
        outputs.append(H)
    return nd.stack(*outputs, axis=0), H, C


def compiled_layer(model, X, H, C):
    if X.shape[0] != model.module.steps:
        raise ValueError(f"the compiled rung is unrolled for {model.module.steps} steps, "
                         f"got {X.shape[0]}: build it with steps={X.shape[0]}")
    return model.module(X, H, C)


def fast_layer(model, X, H, C):
    """The suite's `fast` layer stack on the canonical parameters."""
    Y, [(H, C)] = fast_forward(model.cfg.layer_spec, model.arrays(), X, [(H, C)])
    return Y, H, C


def builtin_layer(model, X, H, C):
    Y, [(H, C)] = builtin_forward(model.cfg.layer_spec, model.module, X, [(H, C)])
    return Y, H, C


LAYERS = {"d2l": d2l_layer, "fused": fused_layer, "hoisted": hoisted_layer,
          "onednn": onednn_layer, "compiled": compiled_layer, "eltwise": compiled_layer,
          "fast": fast_layer,
          "builtin": builtin_layer}
CODE_PATHS = {"d2l": "Python loop, imperative mx.nd, nd.dot (bundled OpenBLAS), 8 per step",
              "fused": "Python loop, imperative mx.nd, nd.dot (bundled OpenBLAS), 2 per step",
              "hoisted": "input nd.dot hoisted, Python loop, imperative, 1 nd.dot per step",
              "onednn": "input hoisted, Python loop, imperative, FullyConnected (oneDNN)",
              "compiled": "input hoisted, FullyConnected loop in a HybridBlock, "
                          "hybridize(static_alloc, static_shape)",
              "eltwise": "input hoisted, FullyConnected loop in a HybridBlock, sigmoid and tanh "
                         "through Activation (oneDNN eltwise), hybridize(static_alloc, "
                         "static_shape)",
              "hand_vjp": "input hoisted, hand-written backward called by hand (autograd for the "
                          "head only), "
                          "forward and backward loops hybridized, FullyConnected"}


def _blocks(model: Model) -> list:
    """Every hybridized block the rung runs (the fast rung's: those it has made so far)."""
    if model.impl == "fast":
        return cached_blocks("lstm", model.cfg.hidden_size)
    return list(model.modules.values())


def loss(model: Model, ids, targets):
    """`ids, targets: (B, T)` nd -> `(mean cross-entropy, the same, logits (B, T, V))`, zero
    state; `model.impl` names the rung. Call under `autograd.record()`. The hand_vjp rung runs
    its backward here, by hand (`hand_forward_backward`), and says so with None in place of the
    loss to differentiate."""
    if model.impl == "hand_vjp":
        with mx.autograd.pause():  # its loops run outside autograd
            value, logits = hand_forward_backward(model, ids, targets)
        return value, None, logits
    X = nd.one_hot(ids.T, model.cfg.vocab_size, dtype=model.dtype)  # d2l: (T, B, V)
    zeros = nd.zeros((X.shape[1], model.cfg.hidden_size), ctx=model.device, dtype=model.dtype)
    Y, _, _ = LAYERS[model.impl](model, X, zeros, zeros)
    logits = nd.swapaxes(output_layer(model.arrays(), Y), 0, 1)
    value = cross_entropy(logits, targets)
    return value, value, logits


def _canonical(rung: str, cfg: LMConfig):
    """The rung's `Model.to_canonical`: names as `leaves()` -> canonical (the transposed
    rungs' `W_x`, `W_h` back to `(in, 4H)` first; chain rule for the built-in)."""
    def to_canonical(named, convert):
        if rung in TRANSPOSED:
            named = {k: (v.T if k in ("W_x", "W_h") else v) for k, v in named.items()}
        return canonical_grads(rung, cfg, named, convert)
    return to_canonical


def _build_net(rung: str, cfg: LMConfig, params: Params, dtype: str, ctx, steps: int):
    """The rung's Gluon block holding `params`, hybridized for speed."""
    if rung == "builtin":
        layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
        net = make_builtin(cfg.layer_spec, layer, dtype, ctx, hybridize=False)
    else:
        net = LoopBlock(cfg.vocab_size, cfg.hidden_size, steps, dtype, rung == "eltwise")
        net.initialize(mx.init.Zero(), ctx=ctx)
        fused = fuse_lstm(params)
        for key in FUSED_KEYS:
            value = fused[key].T if key in ("W_x", "W_h") else fused[key]
            getattr(net, key).set_data(from_numpy(np.ascontiguousarray(value), dtype, ctx))
    net.hybridize(**HYBRIDIZE)
    return net


def build(rung: str, cfg: LMConfig, params: Params, dtype: str = "float32",
          device: str = "cpu", steps: int = 35) -> Model:
    """Rung `rung` holding canonical LM `params` (NumPy) exactly, a `Model` with impl = the
    rung; `steps`: the sequence length T (the compiled rung is unrolled for it)."""
    check_config(cfg)
    if rung not in RUNGS:
        raise NotSupported(f"mxnet has no rung {rung!r}; it has {', '.join(RUNGS)}")
    ctx = resolve_device(device)
    to_canonical = _canonical(rung, cfg)
    head = {k: v for k, v in params.items() if k in HEAD_KEYS}
    if rung in LOOP_BLOCKS + ("builtin",):
        net = _build_net(rung, cfg, params, dtype, ctx, steps)
        path = CODE_PATHS.get(rung) or builtin_code_path(cfg.layer_spec, dtype, ctx)
        model = build_model(cfg, rung, head, dtype, ctx, path, to_canonical=to_canonical)
        model.modules[""] = net
        return model
    if rung in CANONICAL_RUNGS:
        layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    else:
        layer = {k: v for k, v in fuse_lstm(params).items() if k in FUSED_KEYS}
        if rung in TRANSPOSED:
            layer = {k: np.ascontiguousarray(v.T) if k in ("W_x", "W_h") else v
                     for k, v in layer.items()}
    model = build_model(cfg, rung, {**head, **layer}, dtype, ctx,
                        CODE_PATHS.get(rung) or fast_code_path(cfg.layer_spec),
                        to_canonical=to_canonical)
    if rung == "hand_vjp":  # its hybridized forward and backward loops (no parameters)
        model.modules.update(zip(("forward", "backward"),
                                 make_loops(cfg.hidden_size, steps, HYBRIDIZE)))
    return model


def products_step(cfg: LMConfig, batch: int, steps: int, dtype: str = "float32",
                  device: str = "cpu"):
    """The floor under every scratch rung (common.rungs.PRODUCTS) -> `(step, sync, kernels)`:
    one training step's products alone, each a `FullyConnected` as the rungs from `onednn` up
    run them."""
    ctx = resolve_device(device)
    H, V, B, T = cfg.hidden_size, cfg.vocab_size, batch, steps
    Hg = gate_width(cfg.cell, H)      # the fused gates: 4H (LSTM), 3H (GRU), H (RNN)
    rng = np.random.default_rng(0)
    r = lambda *shape: from_numpy(rng.standard_normal(shape), dtype, ctx)
    W_h, W_hT, W_x, W_q, W_qT = r(Hg, H), r(H, Hg), r(Hg, V), r(V, H), r(H, V)
    X, Y, dlogits, h, dg = r(T * B, V), r(T * B, H), r(T * B, V), r(B, H), r(B, Hg)
    G_T, X_T, Y_T, dlogits_T = r(Hg, T * B), r(V, T * B), r(H, T * B), r(V, T * B)

    def step():
        for _ in range(T):
            out = fc(h, W_h)
        for _ in range(T):
            out = fc(dg, W_hT)
        # dW_h, the input projection and dW_x, the output layer and its two gradients
        return (out, fc(G_T, Y_T), fc(X, W_x), fc(G_T, X_T), fc(Y, W_q),
                fc(dlogits, W_qT), fc(dlogits_T, Y_T))

    return step, lambda _: nd.waitall(), "FullyConnected (oneDNN on CPU)"


def hand_forward_backward(model: Model, ids, targets):
    """The hand_vjp rung: the recurrence's forward and backward loops (recurrence.py) by hand,
    autograd only for the head and the loss (whose input gradient `dY` the loops take); the
    gradients left in the leaves' buffers -> `(loss, logits (B, T, V))`."""
    p = model.arrays()
    grads = {k: param.grad(model.device) for k, param in model.leaves().items()}
    forward_loop, backward_loop = model.modules["forward"], model.modules["backward"]
    X = nd.one_hot(ids.T, model.cfg.vocab_size, dtype=model.dtype)  # (T, B, V)
    zeros = nd.zeros((X.shape[1], model.cfg.hidden_size), ctx=model.device, dtype=model.dtype)
    Y, cells, gates = forward_loop(fc(X, p["W_x"], p["b"]), p["W_h"], zeros, zeros)
    Y.attach_grad()
    with mx.autograd.record():
        logits = nd.swapaxes(output_layer(p, Y), 0, 1)
        loss = cross_entropy(logits, targets)
    loss.backward()
    dG, grads["W_h"][:], _, _ = backward_loop(Y.grad, zeros, zeros, p["W_h"], zeros, zeros, Y,
                                              cells, gates)
    flat = lambda A: nd.transpose(nd.reshape(A, shape=(-1, A.shape[-1])))
    # XP = X W_x^T + b: dW_x = dG^T X over all T*B rows, db = the sum of dG
    grads["W_x"][:] = nd.FullyConnected(flat(dG), flat(X), no_bias=True, num_hidden=X.shape[-1])
    grads["b"][:] = nd.sum(dG, axis=(0, 1))
    return loss, logits


def loss_and_grads(model: Model, ids, targets):
    """`(loss, logits (B, T, V), canonical gradients)` as NumPy, for the parity checks."""
    with mx.autograd.record():
        value, total, logits = loss(model, model.ids_in(ids), model.ids_in(targets))
    if total is not None:
        total.backward()
    return float(value.asscalar()), to_numpy(logits), model.canonical_grads()


class _SGD:
    """d2l's `sgd` as the ladder runs it: one `nd.sgd_update` per leaf, in place (`p -= lr *
    g`), with Gluon's `step(batch_size)` (the loss is a mean: batch_size 1). Not Gluon's
    Trainer: that would group the updates into multi-tensor kernels (other operator counts),
    and it refuses the hand_vjp rung's hand-written gradients as stale."""

    def __init__(self, model: Model, lr: float):
        self.lr = lr
        self.pairs = [(p.data(model.device), p.grad(model.device))
                      for p in model.leaves().values()]

    def step(self, batch_size: int = 1):
        for weight, grad in self.pairs:
            nd.sgd_update(weight, grad, lr=self.lr, out=weight)


def make_step(model: Model, ids, targets, lr: float, clip: float) -> Callable[[], object]:
    """d2l's training step on one batch (trainer.Trainer: forward, loss, backward, clipping,
    SGD) -> a function of no arguments returning the loss, unsynchronised."""
    ids, targets = model.ids_in(ids), model.ids_in(targets)
    trainer = Trainer(model, loss, _SGD(model, lr), clip)
    return lambda: trainer.step_async(ids, targets)[0]


def sync(model: Model) -> Callable[[object], None]:
    """The barrier a timed step ends with: MXNet's engine is asynchronous on every device."""
    return lambda _: nd.waitall()


def count_ops(model: Model, step: Callable[[], object]):
    """Operators one training step runs -> `(count, how it was counted)`, from MXNet's
    profiler, engine bookkeeping left out. A hybridized block runs its operators in bulk
    segments, which the profiler lists under one truncated name, so it is counted with bulking
    off (under autograd) or run imperatively (the hand_vjp and fast rungs' loops, which run
    outside autograd, where bulking has no switch): the same operators, one engine call each.
    The blocks are hybridized as before afterwards."""
    for block in _blocks(model):
        if model.impl in ("hand_vjp", "fast"):
            block.hybridize(active=False)
        else:
            block.hybridize(**HYBRIDIZE, forward_bulk_size=1, backward_bulk_size=1)
    if _blocks(model):
        step()  # traces the unbulked graphs outside the profile
    nd.waitall()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                                   filename=os.path.join(tmp, "profile.json"))
            mx.profiler.set_state("run")
            step()
            nd.waitall()
            mx.profiler.set_state("stop")
            table = mx.profiler.dumps(reset=True)
    finally:
        for block in _blocks(model):
            block.hybridize(**HYBRIDIZE)
    return _operator_count(table), "MXNet profiler operator calls (bulk execution off)"


def _operator_count(table: str) -> int:
    """Sum of the `Total Count` column of the profiler's `operator` section."""
    section = table.split("\noperator\n", 1)[-1].split("\n\n", 1)[0]
    total = 0
    for line in section.splitlines():
        match = re.match(r"(\S+)\s+(\d+)\s+[\d.]+", line.strip())
        if match and match.group(1) not in NOT_KERNELS:
            total += int(match.group(2))
    return total


def runtime_info(device: str = "cpu") -> dict:
    """Versions, device and threads as this process sees them, for the records."""
    ctx = resolve_device(device)
    threads = (os.environ.get("OMP_NUM_THREADS")
               or openmp_counts().get("omp_max_threads_python_thread"))
    return {"versions": {"mxnet": mx.__version__}, "device": device_name(ctx),
            "threads": int(threads) if threads else None}


def set_threads(threads: int) -> None:
    """Nothing to do here: MXNet sizes its OpenMP teams from OMP_NUM_THREADS, read at import
    (the caller sets it, and pins the process to `threads` CPUs)."""
