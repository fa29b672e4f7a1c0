"""Pure one-step cells in JAX, written from d2l's equations (docs/contract.md).

`p` holds one (layer, direction)'s canonical parameters without the prefix (`W_xh`, `W_hh`,
`b_h`, ...) as arrays, weights `(in, out)` so the math reads `X @ W`; `X: (B, I)` is one
time step. Each step returns the new state: `H: (B, H)`, or for LSTM the pair `(H, C)`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.nn import sigmoid

from common.config import CELLS, GRU_VARIANTS, check_activation, check_choice

from .recurrence import Split

ACTIVATION_FNS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def rnn_step(p, X, H, activation="tanh"):
    """d2l's RNN step: `H' = tanh(X W_xh + H W_hh + b_h)` (or relu); X: (B, I), H: (B, H)."""
    return ACTIVATION_FNS[activation](X @ p["W_xh"] + H @ p["W_hh"] + p["b_h"])


def lstm_step(p, X, state):
    """d2l's LSTM step; X: (B, I), state: (H, C) each (B, H) -> (H', C')."""
    H, C = state
    I = sigmoid(X @ p["W_xi"] + H @ p["W_hi"] + p["b_i"])
    F = sigmoid(X @ p["W_xf"] + H @ p["W_hf"] + p["b_f"])
    O = sigmoid(X @ p["W_xo"] + H @ p["W_ho"] + p["b_o"])
    C_tilde = jnp.tanh(X @ p["W_xc"] + H @ p["W_hc"] + p["b_c"])
    C = F * C + I * C_tilde
    H = O * jnp.tanh(C)
    return H, C


def gru_step(p, X, H, variant="reset_after"):
    """d2l's GRU step with the candidate of `variant`; X: (B, I), H: (B, H) -> H'."""
    Z = sigmoid(X @ p["W_xz"] + H @ p["W_hz"] + p["b_z"])
    R = sigmoid(X @ p["W_xr"] + H @ p["W_hr"] + p["b_r"])
    if variant == "reset_after":
        # The built-ins' form: the reset gate scales the recurrent projection, bias included.
        H_tilde = jnp.tanh(X @ p["W_xh"] + p["b_h"] + R * (H @ p["W_hh"] + p["b_hn"]))
    elif variant == "reset_before":
        # d2l's form: the reset gate scales H before the projection.
        H_tilde = jnp.tanh(X @ p["W_xh"] + p["b_h"] + (R * H) @ p["W_hh"] + p["b_hn"])
    else:
        check_choice("GRU variant", variant, GRU_VARIANTS)
    return Z * H + (1 - Z) * H_tilde


def step_fn(cell, variant="reset_after", activation="tanh"):
    """The step `(p, X, state) -> state` of `cell` (`variant` picks the GRU candidate,
    `activation` the RNN's nonlinearity)."""
    check_choice("cell", cell, CELLS)
    check_activation(cell, activation)
    if cell == "gru":
        check_choice("GRU variant", variant, GRU_VARIANTS)
        return functools.partial(gru_step, variant=variant)
    if cell == "rnn":
        return (rnn_step if activation == "tanh"
                else functools.partial(rnn_step, activation=activation))
    return lstm_step


# The split form of the cells (recurrence.py's fast path): a step is
# `pointwise(q, xp, hh, state)` with `xp = X @ W_x + b` and `hh = H @ W_h`, each `(B, G*H)`,
# the gates' blocks side by side in SPLIT_GATES order; `q` holds GRU's `b_hn` (else empty).
SPLIT_GATES = {"rnn": ("h",), "lstm": ("i", "f", "o", "c"), "gru": ("z", "r", "h")}


def rnn_pointwise(q, xp, hh, H):
    """`H' = tanh(xp + hh)`, xp and hh: (B, H)."""
    return jnp.tanh(xp + hh)


def rnn_relu_pointwise(q, xp, hh, H):
    """`H' = relu(xp + hh)`, xp and hh: (B, H)."""
    return jax.nn.relu(xp + hh)


def lstm_pointwise(q, xp, hh, state):
    """d2l's LSTM from fused pre-activations `xp + hh: (B, 4H)`, gates i, f, o, c."""
    H, C = state
    gates = xp + hh
    n = C.shape[-1]
    I, F, O = jnp.split(sigmoid(gates[..., :3 * n]), 3, axis=-1)
    C_tilde = jnp.tanh(gates[..., 3 * n:])
    C = F * C + I * C_tilde
    return O * jnp.tanh(C), C


def gru_pointwise(q, xp, hh, H):
    """The reset_after GRU from `xp, hh: (B, 3H)`, gates z, r, h; `q["b_hn"]: (H,)`."""
    n = H.shape[-1]
    Z = sigmoid(xp[..., :n] + hh[..., :n])
    R = sigmoid(xp[..., n:2 * n] + hh[..., n:2 * n])
    H_tilde = jnp.tanh(xp[..., 2 * n:] + R * (hh[..., 2 * n:] + q["b_hn"]))
    return Z * H + (1 - Z) * H_tilde


def reset_before_fused_step(p, xp, H):
    """The reset_before GRU from `xp: (B, 3H)` (gates z, r, h, input side with biases) and
    fused `p["W_h"]: (H, 3H)`, `p["b_hn"]`: `H @ W_h` for z and r, then `(R * H) @ W_hh`."""
    n = H.shape[-1]
    ZR = sigmoid(xp[..., :2 * n] + H @ p["W_h"][:, :2 * n])
    Z, R = ZR[..., :n], ZR[..., n:]
    H_tilde = jnp.tanh(xp[..., 2 * n:] + (R * H) @ p["W_h"][:, 2 * n:] + p["b_hn"])
    return Z * H + (1 - Z) * H_tilde


SPLITS = {"rnn": Split(rnn_pointwise, True), "lstm": Split(lstm_pointwise, True),
          "gru": Split(gru_pointwise, False)}
RELU_SPLIT = Split(rnn_relu_pointwise, True)


def split_of(cell, variant="reset_after", activation="tanh"):
    """The split form of `cell`, or None where there is none: the reset_before GRU multiplies
    `(R * H) @ W_hh`, so its recurrent product is not `H @ W_h`."""
    check_choice("cell", cell, CELLS)
    check_activation(cell, activation)
    if cell == "gru" and check_choice("GRU variant", variant, GRU_VARIANTS) == "reset_before":
        return None
    return RELU_SPLIT if activation == "relu" else SPLITS[cell]
