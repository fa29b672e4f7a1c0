"""Drivers over `mx.nd` arrays: the two scratch stacks, and the wrapper around Gluon's fused
built-in layers. Pure functions: state goes in and comes out.

`scratch_forward` is d2l's algorithm: the cell of cells.py applied step by step in a Python
loop of imperative `nd` ops, gradients by autograd. `fast_forward` is the fast scratch stack,
built by the same recipe in every framework: the gates fused, the input projection of every
step hoisted into one `FullyConnected` (oneDNN on CPU), the loop hybridized with a hand-written
backward (recurrence.HandRecurrence). The reset_before GRU's fast stack hoists and fuses the
same way, its hybridized loop under autograd (recurrence.py says why).

`X: (T, B, I)` time-major; outputs `(T, B, H*D)`, forward features first; states are a list per
(layer, direction) in the order l0, l0_rev, l1, ..., each `(B, H)` or for LSTM a pair `(H, C)`.
Everything here is differentiable under `mx.autograd.record()`.
"""
import os

import numpy as np

from common.backend import hidden_of, refuse_reset_before
from common.errors import NotSupported
from common.params import CELL_GATES, prefixes, sub_params

from ._mx import mx
from .arrays import from_numpy
from .cells import step_fn
from .convert import to_native
from .recurrence import HandRecurrence, loops_for
from .runtime import enabled_features

nd = mx.nd

GLUON_LAYERS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def zero_states(spec, batch, dtype, device):
    """All-zero states of `batch` rows, in the contract's layout, as `nd` arrays."""
    z = lambda: nd.zeros((batch, spec.hidden_size), ctx=device, dtype=dtype)
    n = spec.num_layers * spec.num_directions
    return [(z(), z()) if spec.cell == "lstm" else z() for _ in range(n)]


def run_direction(step, p, X, state, reverse=False):
    """The time loop of one direction. `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    T = X.shape[0]
    outputs = [None] * T
    # the reverse direction walks time backwards but writes Y at each step's own position
    for t in (reversed(range(T)) if reverse else range(T)):
        state = step(p, X[t], state)
        outputs[t] = hidden_of(state)
    return nd.stack(*outputs, axis=0), state


def stack_forward(spec, run, params, X, states=None):
    """The stack of `run(p, X, state, reverse) -> (Y, final)` per (layer, direction).
    `params`: canonical name -> nd; `X: (T, B, I)` -> `(Y: (T, B, H*D), finals)`."""
    if states is None:
        states = zero_states(spec, X.shape[1], X.dtype, X.context)
    names, D = prefixes(spec), spec.num_directions
    inputs, finals = X, []
    for layer in range(spec.num_layers):
        outputs = []
        for d in range(D):
            i = layer * D + d
            Y, final = run(sub_params(params, names[i]), inputs, states[i], reverse=d == 1)
            outputs.append(Y)
            finals.append(final)
        inputs = nd.concat(*outputs, dim=2) if D == 2 else outputs[0]
    return inputs, finals


def check_builtin_activation(spec, dtype, ctx):
    """MXNet 1.9.1's fused CPU RNN kernel rounds the ReLU cell's output to float32 even in
    float64 (its ReLU helper returns `static_cast<float>(x)`; the parity harness measured one
    float32 ulp, about 1e-7 relative, from the first step on; tanh is exact), so a float64
    ReLU built-in would not be float64."""
    if (spec.cell == "rnn" and spec.activation == "relu" and np.dtype(dtype) == np.float64
            and ctx.device_type == "cpu"):
        raise NotSupported("mxnet.gluon.rnn.RNN(activation='relu') computes in float32 "
                           "precision even in float64 (MXNet 1.9.1's CPU kernel); use "
                           "dtype float32 or impl='scratch'")


def scratch_forward(spec, params, X, states=None):
    """d2l's stack: the cell step by step, imperative `nd` ops, backward by autograd."""
    step = step_fn(spec.cell, spec.gru_variant, spec.activation)
    run = lambda p, X, state, reverse: run_direction(step, p, X, state, reverse)
    return stack_forward(spec, run, params, X, states)


def fused_weights(cell, p):
    """One direction's canonical `p` -> `(W_x (G*H, I), W_h (G*H, H), b (G*H))`, the gates
    stacked in the contract's order, weights transposed as `FullyConnected` wants them."""
    join = lambda fmt: nd.concat(*[p[fmt.format(g)] for g in CELL_GATES[cell]], dim=-1)
    return nd.transpose(join("W_x{}")), nd.transpose(join("W_h{}")), join("b_{}")


def relu_loop(XP, W_h, H):
    """The ReLU RNN over hoisted inputs `XP: (T, B, H)`, backward by autograd (recurrence.py's
    hand-written backward is tanh's): `(Y: (T, B, H), final H)`."""
    outputs = []
    for t in range(XP.shape[0]):
        H = nd.relu(XP[t] + nd.FullyConnected(H, W_h, no_bias=True, num_hidden=W_h.shape[0]))
        outputs.append(H)
    return nd.stack(*outputs, axis=0), H


def fast_recurrence(spec, W_h, b_hn, XP, state):
    """`XP: (T, B, G*H)` -> `(Y: (T, B, H), final state)` through recurrence.py's loops."""
    if spec.cell == "rnn" and spec.activation == "relu":
        return relu_loop(XP, W_h, state)
    if spec.cell == "gru" and spec.gru_variant == "reset_before":
        Y = loops_for("reset_before", XP, state)(XP, W_h, b_hn, state)
        return Y, Y[Y.shape[0] - 1]
    if spec.cell == "lstm":
        Y, H, C = HandRecurrence("lstm")(XP, W_h, *state)
        return Y, (H, C)
    extra = (b_hn,) if spec.cell == "gru" else ()
    return tuple(HandRecurrence(spec.cell)(XP, W_h, *extra, state))


def run_direction_fast(spec, p, X, state, reverse=False):
    """One direction of the fast stack: `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    W_x, W_h, b = fused_weights(spec.cell, p)
    # every step's input side at once, (T, B, G*H), through FullyConnected (oneDNN on CPU)
    XP = nd.FullyConnected(X, W_x, b, num_hidden=W_x.shape[0], flatten=False)
    # the reverse direction runs the same loop over time-flipped inputs; Y flips back
    Y, final = fast_recurrence(spec, W_h, p.get("b_hn"), nd.flip(XP, axis=0) if reverse else XP,
                               state)
    return (nd.flip(Y, axis=0) if reverse else Y), final


def fast_forward(spec, params, X, states=None):
    """The fast stack: gates fused, input projection hoisted, hand-written backward."""
    run = lambda p, X, state, reverse: run_direction_fast(spec, p, X, state, reverse)
    return stack_forward(spec, run, params, X, states)


FORWARDS = {"scratch": scratch_forward, "fast": fast_forward}


def forward_of(impl):
    """The stack over canonical parameters of `impl` ("scratch" or "fast")."""
    return FORWARDS[impl]


SCRATCH_CODE_PATH = "python loop over mx.nd (nd.dot, bundled OpenBLAS), imperative"


def fast_code_path(spec):
    """The fast stack's code: its loop and its backward."""
    if spec.cell == "rnn" and spec.activation == "relu":
        return ("fast scratch (ReLU RNN): input projection hoisted, imperative FullyConnected "
                "loop, autograd backward")
    head = "fast scratch: gates fused, input projection hoisted, FullyConnected loop hybridized"
    if spec.cell == "gru" and spec.gru_variant == "reset_before":
        return f"{head}, autograd backward (reset_before)"
    return f"{head}, hand-written backward (autograd.Function over hybridized loops)"


def code_path_of(impl, spec):
    """The code a canonical stack of `impl` runs (for records)."""
    return fast_code_path(spec) if impl == "fast" else SCRATCH_CODE_PATH


def make_builtin(spec, params, dtype, device, hybridize=True):
    """Gluon's fused layer (layout 'TNC') holding canonical `params` (NumPy) exactly, in `dtype`
    on `device` (an `mx.Context`); hybridized unless `hybridize` is False."""
    return builtin_from_native(spec, to_native(spec, params), dtype, device, hybridize)


def builtin_name(cell):
    return f"mxnet.gluon.rnn.{GLUON_LAYERS[cell]}"


def builtin_code_path(spec, dtype, device):
    """Which kernel Gluon's fused layer runs (seen with DNNL_VERBOSE=1 on MXNet 1.9.1, CPU) in
    `dtype` on `device` (an `mx.Context`)."""
    name = f"gluon.rnn.{spec.cell.upper()} fused RNN op, hybridized"
    if device.device_type == "gpu":
        return f"{name}, cuDNN"
    onednn = (enabled_features().get("MKLDNN")
              and os.environ.get("MXNET_USE_MKLDNN_RNN", "1") != "0")
    # oneDNN's RNN primitive takes float32 only; float64 runs MXNet's own CPU kernel
    return f"{name}, {'oneDNN' if onednn and dtype == 'float32' else 'native CPU kernel'}"


def builtin_from_native(spec, native, dtype, ctx, hybridize=True):
    """Gluon's fused layer (layout 'TNC') holding `native` params (see convert.py)."""
    refuse_reset_before(spec, builtin_name("gru"))
    check_builtin_activation(spec, dtype, ctx)
    extra = {"activation": spec.activation} if spec.cell == "rnn" else {}
    net = getattr(mx.gluon.rnn, GLUON_LAYERS[spec.cell])(
        spec.hidden_size, num_layers=spec.num_layers, bidirectional=spec.bidirectional,
        input_size=spec.input_size, layout="TNC", dtype=dtype, **extra)
    # input_size makes every shape known, so parameters exist before the first call
    net.initialize(mx.init.Zero(), ctx=ctx)
    params = net.collect_params()
    for name, value in native.items():
        params[net.prefix + name].set_data(from_numpy(value, dtype, ctx))
    if hybridize:
        net.hybridize()
    return net


def pack_states(spec, states):
    """Contract states -> Gluon's `[H (L*D, B, H)]`, or `[H, C]` for LSTM."""
    if spec.cell == "lstm":
        return [nd.stack(*[s[0] for s in states]), nd.stack(*[s[1] for s in states])]
    return [nd.stack(*states)]


def unpack_states(spec, packed):
    """Gluon's `(L*D, B, H)` states -> the contract's list (slices stay differentiable)."""
    n = spec.num_layers * spec.num_directions
    if spec.cell == "lstm":
        return [(packed[0][i], packed[1][i]) for i in range(n)]
    return [packed[0][i] for i in range(n)]


def builtin_forward(spec, native, X, states=None):
    """Run the built-in `native` (from `make_builtin`) on `X: (T, B, I)` ->
    `(Y: (T, B, H*D), finals)`; None states = zeros."""
    if states is None:
        states = zero_states(spec, X.shape[1], X.dtype, X.context)
    # always pass a state: without one Gluon returns only Y, not the final states
    Y, packed = native(X, pack_states(spec, states))
    return Y, unpack_states(spec, packed)
