"""The "why is the built-in faster" ladder, framework-neutral: the rungs, their configuration,
and the fused parameter layout the middle rungs train (NumPy only; no framework import).

d2l's exercise asks why Gluon's concise RNN trains faster than the scratch one. The ladder
answers it by changing d2l's scratch LSTM language model one thing at a time until it is the
built-in, in every framework (`{torch,mxnet,jax}_impl/rungs.py`, same function names), and
measuring each rung (bench/explain/runner.py). Every rung computes the same function of the same
canonical parameters; tests/test_explain.py holds each to the built-in's forward and gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .config import DTYPES, LMConfig, check_choice
from .errors import NotSupported
from .params import Params, lm_canonical


@dataclass(frozen=True)
class RungInfo:
    """One rung: a short label for tables and charts, what it changes from the rung before,
    and where a framework does it its own way, that framework's words for it."""

    label: str
    change: str
    per_framework: Tuple[Tuple[str, str], ...] = ()

    def describe(self, framework: str) -> str:
        return dict(self.per_framework).get(framework, self.change)


# Ladder order. Each framework offers the subset its rungs.RUNGS lists, in this order.
RUNG_INFO: Dict[str, RungInfo] = {
    "d2l": RungInfo("d2l scratch", "d2l's loop: per step, one matmul per gate and side (8), "
                    "one-hot inputs multiplied as dense matrices, run op by op"),
    "fused": RungInfo("gates fused", "the four gates fused: per step one matmul on each side, "
                      "X_t W_x and H W_h with W_x (V, 4H) and W_h (H, 4H)"),
    "hoisted": RungInfo("input hoisted", "the input projection of all T steps as one "
                        "(T*B, V) x (V, 4H) matmul before the loop; per step only H W_h"),
    "onednn": RungInfo("oneDNN matmuls", "every product through FullyConnected (oneDNN) "
                       "instead of nd.dot (MXNet's bundled OpenBLAS)"),
    "compiled": RungInfo("loop compiled", "the loop compiled", (
        ("torch", "the hoisted loop scripted by TorchScript: no Python per op, autograd "
                  "still records every op"),
        ("mxnet", "the oneDNN loop as a HybridBlock, hybridize(static_alloc, static_shape): "
                  "one cached graph, no Python per op"),
        ("jax", "the whole step jitted, the loop a lax.scan: XLA fuses the pointwise ops; "
                "backward by autodiff"))),
    "eltwise": RungInfo("oneDNN activations", "the compiled loop's sigmoid and tanh through "
                        "Activation (oneDNN's eltwise kernel) instead of MXNet's own elementwise "
                        "sigmoid and tanh; the same arithmetic"),
    "hand_vjp": RungInfo("hand backward", "a hand-written backward: the reverse loop carries "
                         "only the state gradients; the weight gradient as one matmul over all "
                         "steps", (
        ("torch", "a hand-written backward (autograd.Function, both loops TorchScript): the "
                  "reverse loop carries only the state gradients, the gates' local derivatives "
                  "formed for all steps at once before it; the weight gradient as one matmul "
                  "over all steps"),
        ("mxnet", "a hand-written backward (forward and backward loops each one hybridized "
                  "graph, autograd only for the head, activations through Activation as in the "
                  "rung before): the reverse loop carries only the state gradients; the weight "
                  "gradient as one FullyConnected over all steps"),
        ("jax", "a hand-written backward (custom_vjp, the `fast` layer's recurrence): the "
                "reverse loop carries only the state gradients; the weight gradient as one "
                "matmul over all steps"))),
    "packed": RungInfo("oneDNN packed", "the hand backward's recurrent products through oneDNN "
                       "with the weight packed once per call (torch.ops.mkldnn's "
                       "_reorder_linear_weight and _linear_pointwise, the inner product torch's "
                       "oneDNN paths run) instead of torch.matmul (MKL); the same arithmetic"),
    "fast": RungInfo("fast impl", "the suite's `fast` implementation itself (layers.fast_forward: "
                     "what `--impl fast` and the speed grid's fast column run, for every cell, "
                     "depth and direction): the rungs above as one layer stack", (
        ("torch", "the suite's `fast` implementation (layers.fast_forward): the oneDNN packed "
                  "rung's loops, written for every cell, depth and direction; canonical "
                  "parameters, gates fused on each call"),
        ("mxnet", "the suite's `fast` implementation (layers.fast_forward): the hand backward's "
                  "hybridized loops inside an autograd.Function, so autograd runs the head and "
                  "the input projection; canonical parameters, gates fused on each call"),
        ("jax", "the suite's `fast` implementation (layers.fast_forward): the hand backward "
                "rung's custom_vjp scan, written for every cell, depth and direction; canonical "
                "parameters, gates fused on each call"))),
    "builtin": RungInfo("built-in", "the framework's fused LSTM layer", (
        ("torch", "nn.LSTM: one fused kernel per layer (oneDNN on CPU, cuDNN on GPU)"),
        ("mxnet", "gluon.rnn.LSTM, hybridized: one fused kernel per layer (oneDNN on CPU, "
                  "cuDNN on GPU)"),
        ("jax", "Flax's OptimizedLSTMCell under nn.RNN (a lax.scan, backward by autodiff), "
                "step jitted"))),
}
RUNG_ORDER: Tuple[str, ...] = tuple(RUNG_INFO)

# The floor under every scratch rung (bench/explain/runner.py measures it beside the ladder): the
# products one training step of the LSTM language model must run when the recurrence is written
# out per time step, timed alone, in each framework's fastest way of running them, and nothing else.
PRODUCTS = ("the products alone: T forward recurrent products (B, H) x (H, G), T backward "
            "(B, G) x (G, H), the recurrent weight gradient (H, T*B) x (T*B, G), the input "
            "projection (T*B, V) x (V, G) and its weight gradient, the output layer and its two "
            "gradients; G = 4H for LSTM, 3H for GRU, H for RNN")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def gate_width(cell: str, hidden: int) -> int:
    """The width of a cell's fused gate pre-activations: 4H (LSTM), 3H (GRU), H (RNN)."""
    return GATES[cell] * hidden

# Rungs holding the canonical parameters as they are (the others fuse them, or use the built-in's).
CANONICAL_RUNGS = ("d2l", "fast")

# d2l's character LM (chapter 9): time machine characters, B=32, T=35, lr 1, clip 1.
D2L_SIZES = {"batch": 32, "steps": 35, "vocab": 28}
# The fused layout's gate order: the contract's, so the sigmoid gates come first.
FUSED_GATES = ("i", "f", "o", "c")
FUSED_KEYS = ("W_x", "W_h", "b")


@dataclass(frozen=True)
class ExplainConfig:
    """What `rnnbench explain` runs: which sizes, how long it times each rung, on what."""

    hidden_sizes: Tuple[int, ...] = (256, 1024)
    batch: int = D2L_SIZES["batch"]
    steps: int = D2L_SIZES["steps"]
    vocab: int = D2L_SIZES["vocab"]
    frameworks: Tuple[str, ...] = ("torch", "mxnet", "jax")
    rungs: Tuple[str, ...] = RUNG_ORDER
    devices: Tuple[str, ...] = ("cpu",)
    threads: int = 2
    budget_s: float = 3.0
    min_repeats: int = 5
    warmup: int = 3
    lr: float = 1.0
    clip: float = 1.0
    dtype: str = "float32"
    seed: int = 0
    parity64: bool = True      # also check every rung in float64 on a small case

    def __post_init__(self):
        check_choice("dtype", self.dtype, DTYPES)
        for device in self.devices:
            check_choice("device", device, ("cpu", "gpu"))
        for rung in self.rungs:
            check_choice("rung", rung, RUNG_ORDER)
        for name in ("batch", "steps", "vocab", "threads", "min_repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden sizes must be positive integers, got {self.hidden_sizes!r}")
        if self.warmup < 0 or not self.budget_s > 0:
            raise ValueError("warmup must be >= 0 and the budget positive")

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.steps


def fuse_lstm(params: Params) -> Params:
    """Canonical LM parameters (one LSTM layer, prefix `l0.`) -> the fused layout: `W_x (I, 4H)`,
    `W_h (H, 4H)`, `b (4H)` with the gates side by side in FUSED_GATES order; head keys kept."""
    fused = {k: np.array(v) for k, v in params.items() if not k.startswith("l0.")}
    for key, fmt in zip(FUSED_KEYS, ("l0.W_x{}", "l0.W_h{}", "l0.b_{}")):
        fused[key] = np.concatenate([params[fmt.format(g)] for g in FUSED_GATES], axis=-1)
    return fused


def split_lstm(fused: Params) -> Params:
    """The inverse of `fuse_lstm`; for gradients too (a concatenation's gradient is the split)."""
    params = {k: np.array(v) for k, v in fused.items() if k not in FUSED_KEYS}
    for key, fmt in zip(FUSED_KEYS, ("l0.W_x{}", "l0.W_h{}", "l0.b_{}")):
        for g, block in zip(FUSED_GATES, np.split(fused[key], len(FUSED_GATES), axis=-1)):
            params[fmt.format(g)] = np.ascontiguousarray(block)
    return params


def gap_closed(seconds: float, d2l_seconds: float, builtin_seconds: float) -> float:
    """The share of the d2l-to-built-in gap in step time that a rung at `seconds` has closed:
    0 at d2l's loop, 1 at the built-in (above 1 when faster than the built-in)."""
    gap = d2l_seconds - builtin_seconds
    return float("nan") if gap == 0 else (d2l_seconds - seconds) / gap


def check_config(cfg: LMConfig) -> None:
    """The ladder is d2l's model: one LSTM layer over one-hot inputs."""
    if cfg.cell != "lstm" or cfg.num_layers != 1 or cfg.embed_size is not None:
        raise NotSupported("the ladder is written for d2l's one-layer LSTM over one-hot inputs, "
                           f"not {cfg.layer_spec.label} with embed_size={cfg.embed_size}")


def canonical_grads(rung: str, cfg: LMConfig, named: Params, grads_from_native) -> Params:
    """A rung's gradients by its own names -> canonical names: d2l's and fast's are canonical
    already, the fused rungs' are split per gate, the built-in's layer goes through `grads_from_native`
    (the framework's chain rule) and its head stays as it is."""
    if rung in CANONICAL_RUNGS:
        return dict(named)
    if rung != "builtin":
        return split_lstm(named)
    return lm_canonical(cfg.layer_spec, named, grads_from_native)
