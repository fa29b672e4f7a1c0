"""d2l's recurrent cells as pure step functions over explicit parameter dicts (MXNet `nd`).

`p` holds the canonical keys without the layer prefix (`W_xh`, `W_hh`, `b_h`, ...), weights
stored `(in, out)` so the math reads `X @ W` as in d2l. `X: (B, I)` is one time step; states
are `(B, H)`, or for LSTM the pair `(H, C)`. Every step returns the new state.
"""
from common.config import check_activation

from ._mx import mx

nd = mx.nd


def matmul(X, W):
    """`X @ W`: every scratch product goes through here so a faster kernel can be swapped in.

    `nd.dot` uses MXNet's bundled OpenBLAS (slow, see docs/performance.md) but is d2l's choice.
    """
    return nd.dot(X, W)


ACTIVATION_FNS = {"tanh": nd.tanh, "relu": nd.relu}


def rnn_step(p, X, H, activation="tanh"):
    """Elman RNN: `H' = tanh(X W_xh + H W_hh + b_h)` (or relu)."""
    return ACTIVATION_FNS[activation](matmul(X, p["W_xh"]) + matmul(H, p["W_hh"]) + p["b_h"])


def lstm_step(p, X, state):
    """d2l's LSTM step: `state = (H, C)` -> `(H', C')`."""
    H, C = state
    I = nd.sigmoid(matmul(X, p["W_xi"]) + matmul(H, p["W_hi"]) + p["b_i"])
    F = nd.sigmoid(matmul(X, p["W_xf"]) + matmul(H, p["W_hf"]) + p["b_f"])
    O = nd.sigmoid(matmul(X, p["W_xo"]) + matmul(H, p["W_ho"]) + p["b_o"])
    C_tilde = nd.tanh(matmul(X, p["W_xc"]) + matmul(H, p["W_hc"]) + p["b_c"])
    C = F * C + I * C_tilde
    H = O * nd.tanh(C)
    return H, C


def gru_step(p, X, H, variant="reset_after"):
    """GRU step; `variant` picks where the reset gate acts on the candidate (docs/contract.md)."""
    Z = nd.sigmoid(matmul(X, p["W_xz"]) + matmul(H, p["W_hz"]) + p["b_z"])
    R = nd.sigmoid(matmul(X, p["W_xr"]) + matmul(H, p["W_hr"]) + p["b_r"])
    if variant == "reset_after":
        # the built-ins' (cuDNN's) form: reset scales the recurrent projection
        H_tilde = nd.tanh(matmul(X, p["W_xh"]) + p["b_h"] + R * (matmul(H, p["W_hh"]) + p["b_hn"]))
    elif variant == "reset_before":
        # d2l's scratch form: reset scales the state before the projection
        H_tilde = nd.tanh(matmul(X, p["W_xh"]) + p["b_h"] + matmul(R * H, p["W_hh"]) + p["b_hn"])
    else:
        raise ValueError(f"unknown GRU variant {variant!r}: choose reset_after or reset_before")
    return Z * H + (1 - Z) * H_tilde


def step_fn(cell, variant="reset_after", activation="tanh"):
    """The step function `step(p, X, state) -> state` of `cell` (GRU with `variant`, RNN
    with `activation`)."""
    check_activation(cell, activation)
    if cell == "rnn":
        return rnn_step if activation == "tanh" else lambda p, X, H: rnn_step(p, X, H, activation)
    if cell == "lstm":
        return lstm_step
    if cell == "gru":
        if variant not in ("reset_after", "reset_before"):
            raise ValueError(f"unknown GRU variant {variant!r}: choose reset_after or reset_before")
        return lambda p, X, H: gru_step(p, X, H, variant)
    raise ValueError(f"unknown cell {cell!r}: choose rnn, lstm or gru")
