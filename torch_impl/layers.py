"""Recurrent layers in PyTorch: the two scratch stacks and the built-ins.

`scratch_forward` is d2l's algorithm: the cell of cells.py applied step by step in a Python
loop, gradients by autograd. `fast_forward` is the fast scratch stack, built by the same recipe
in every framework: the gates fused, the input projection of every step hoisted into one
matmul, the loop compiled (TorchScript) with a hand-written backward (recurrence.py) whose
recurrent products go through oneDNN on packed weights where it packs them (float32, CPU). The
reset_before GRU's fast stack hoists and fuses the same way under autograd (recurrence.py says
why). All are pure functions, state in and state out, differentiable with autograd, so a bigger
model's forward can call them. Shapes: `X: (T, B, I)` -> `Y: (T, B, H*D)`; states follow the
contract's layout (a list over l0, l0_rev, l1, ... of `(B, H)` tensors, LSTM pairs `(H, C)`).
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from common.backend import hidden_of, refuse_reset_before
from common.config import LayerSpec
from common.params import CELL_GATES, Params, prefixes, sub_params

from .arrays import framework_dtype
from .cells import step_fn
from .convert import to_native
from .recurrence import hand_gru, hand_lstm, hand_rnn, packable, scripted_reset_before

BUILTINS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def zero_states(spec: LayerSpec, batch: int, dtype, device) -> List:
    """All-zero states of `batch` rows, in the contract's layout."""
    zeros = lambda: torch.zeros((batch, spec.hidden_size), dtype=dtype, device=device)
    return [(zeros(), zeros()) if spec.cell == "lstm" else zeros() for _ in prefixes(spec)]


def run_direction(step, p, X, state, reverse=False):
    """The time loop of one direction: `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    steps = range(X.shape[0] - 1, -1, -1) if reverse else range(X.shape[0])
    outputs = [None] * X.shape[0]
    for t in steps:
        state = step(p, X[t], state)
        outputs[t] = hidden_of(state)  # reversed runs still write outputs in time order
    return torch.stack(outputs), state


def stack_forward(spec: LayerSpec, run, params, X, states=None):
    """The stack of `run(p, X, state, reverse) -> (Y, final)` per (layer, direction):
    `X: (T, B, I)` -> `(Y: (T, B, H*D), finals)`; None states = zeros.

    `params`: canonical names (with prefixes) -> tensors.
    """
    states = zero_states(spec, X.shape[1], X.dtype, X.device) if states is None else states
    pre, D = prefixes(spec), spec.num_directions
    finals, inputs = [], X
    for layer in range(spec.num_layers):
        outputs = []
        for d in range(D):
            idx = layer * D + d
            Y, final = run(sub_params(params, pre[idx]), inputs, states[idx], reverse=d == 1)
            outputs.append(Y)
            finals.append(final)
        inputs = torch.cat(outputs, dim=-1)  # forward direction's features first
    return inputs, finals


def scratch_forward(spec: LayerSpec, params, X, states=None):
    """d2l's stack: the cell step by step in a Python loop, backward by autograd."""
    step = step_fn(spec.cell, spec.gru_variant, spec.activation)
    run = lambda p, X, state, reverse: run_direction(step, p, X, state, reverse)
    return stack_forward(spec, run, params, X, states)


def fused_weights(cell: str, p):
    """One direction's canonical `p` -> `(W_x (I, G*H), W_h (H, G*H), b (G*H))`, the gates
    side by side in the contract's order (CELL_GATES)."""
    join = lambda fmt: torch.cat([p[fmt.format(g)] for g in CELL_GATES[cell]], dim=-1)
    return join("W_x{}"), join("W_h{}"), join("b_{}")


def relu_loop(XP, W_h, H):
    """The ReLU RNN over hoisted inputs `XP: (T, B, H)`, backward by autograd (recurrence.py's
    hand-written backward is tanh's): `(Y: (T, B, H), final H)`."""
    outputs = []
    for t in range(XP.shape[0]):
        H = torch.relu(torch.addmm(XP[t], H, W_h))
        outputs.append(H)
    return torch.stack(outputs), H


def fast_recurrence(spec: LayerSpec, W_h, b_hn, XP, state):
    """`XP: (T, B, G*H)` -> `(Y: (T, B, H), final state)` through recurrence.py's loops."""
    if spec.cell == "rnn" and spec.activation == "relu":
        return relu_loop(XP, W_h, state)
    packed = packable(W_h)
    if spec.cell == "lstm":
        Y, H, C = hand_lstm(XP, W_h, *state, packed=packed)
        return Y, (H, C)
    if spec.cell == "rnn":
        return hand_rnn(XP, W_h, state, packed=packed)
    if spec.gru_variant == "reset_after":
        return hand_gru(XP, W_h, b_hn, state, packed=packed)
    Y = scripted_reset_before()(XP, W_h, b_hn, state)
    return Y, Y[-1]


def run_direction_fast(spec: LayerSpec, p, X, state, reverse=False):
    """One direction of the fast stack: `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    W_x, W_h, b = fused_weights(spec.cell, p)
    XP = torch.matmul(X, W_x) + b  # every step's input side at once: (T, B, G*H)
    # the reverse direction runs the same loop over time-flipped inputs; Y flips back
    Y, final = fast_recurrence(spec, W_h, p.get("b_hn"), XP.flip(0) if reverse else XP, state)
    return (Y.flip(0) if reverse else Y), final


def fast_forward(spec: LayerSpec, params, X, states=None):
    """The fast stack: gates fused, input projection hoisted, hand-written backward."""
    run = lambda p, X, state, reverse: run_direction_fast(spec, p, X, state, reverse)
    return stack_forward(spec, run, params, X, states)


FORWARDS = {"scratch": scratch_forward, "fast": fast_forward}


def forward_of(impl: str):
    """The stack over canonical parameters of `impl` ("scratch" or "fast")."""
    return FORWARDS[impl]


def builtin_name(cell: str) -> str:
    return f"torch.nn.{BUILTINS[cell].__name__}"


def builtin_code_path(spec: LayerSpec, dtype, device) -> str:
    """Which kernel the built-in runs (seen with torch.profiler on torch 2.13's CPU build)."""
    name = builtin_name(spec.cell)
    if torch.device(device).type == "cuda":
        cudnn = torch.backends.cudnn.enabled and torch.backends.cudnn.is_available()
        return f"{name}, {'cuDNN' if cudnn else 'ATen CUDA cells'}"
    # torch sends only float32 LSTMs to oneDNN (aten::mkldnn_rnn_layer); the rest loop in ATen
    onednn = (spec.cell == "lstm" and dtype == torch.float32 and torch.backends.mkldnn.enabled
              and torch.backends.mkldnn.is_available())
    return f"{name}, {'oneDNN' if onednn else 'ATen CPU loop'}"


SCRATCH_CODE_PATH = "scratch cells, Python loop over torch ops (autograd backward)"


def fast_code_path(spec: LayerSpec, dtype, device) -> str:
    """The fast stack's code: its loop, its backward and its products' kernel."""
    if spec.cell == "rnn" and spec.activation == "relu":
        return ("fast scratch (ReLU RNN): input projection hoisted, Python loop of torch.addmm, "
                "autograd backward")
    head = "fast scratch: gates fused, input projection hoisted, TorchScript loop"
    if spec.cell == "gru" and spec.gru_variant == "reset_before":
        return f"{head}, autograd backward (reset_before), torch.addmm products"
    onednn = packable(torch.empty(0, dtype=dtype, device=device))
    kernel = "oneDNN inner products on packed weights" if onednn else "torch.addmm products"
    return f"{head}, hand-written backward (autograd.Function), {kernel}"


def code_path_of(impl: str, spec: LayerSpec, dtype, device) -> str:
    """The code a canonical stack of `impl` runs (for records)."""
    return fast_code_path(spec, dtype, device) if impl == "fast" else SCRATCH_CODE_PATH


def make_builtin(spec: LayerSpec, params: Params, dtype, device) -> nn.Module:
    """The framework's own `nn.RNN/LSTM/GRU` holding canonical `params` (NumPy) exactly, in
    `dtype` (a contract name or torch dtype) on `device`."""
    refuse_reset_before(spec, builtin_name("gru"))
    dtype = framework_dtype(dtype)
    extra = {"nonlinearity": spec.activation} if spec.cell == "rnn" else {}
    module = BUILTINS[spec.cell](spec.input_size, spec.hidden_size, num_layers=spec.num_layers,
                                 bidirectional=spec.bidirectional, dtype=dtype, device=device,
                                 **extra)
    native = {k: torch.as_tensor(v, dtype=dtype) for k, v in to_native(spec, params).items()}
    module.load_state_dict(native, strict=True)
    # Left in training mode: cuDNN's RNN backward refuses eval mode; without dropout the
    # mode changes nothing else.
    return module


def _pack_states(spec: LayerSpec, states):
    """Contract layout -> torch's `h0: (L*D, B, H)` (LSTM: `(h0, c0)`); None stays None."""
    if states is None:
        return None
    if spec.cell == "lstm":
        return torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states])
    return torch.stack(states)


def _unpack_states(spec: LayerSpec, native) -> List:
    """torch's `h_n: (L*D, B, H)` (LSTM: `(h_n, c_n)`) -> the contract's list, same order."""
    if spec.cell == "lstm":
        return [(h, c) for h, c in zip(native[0].unbind(0), native[1].unbind(0))]
    return list(native.unbind(0))


def builtin_forward(spec: LayerSpec, native: nn.Module, X, states: Optional[list] = None):
    """Run the built-in `native` (from `make_builtin`) on `X: (T, B, I)` ->
    `(Y: (T, B, H*D), finals)`; None states = zeros."""
    Y, native_finals = native(X, _pack_states(spec, states))
    return Y, _unpack_states(spec, native_finals)
