"""Pure one-step cells in PyTorch, written from d2l's equations (docs/contract.md).

`p` holds one (layer, direction)'s canonical parameters without the prefix (`W_xh`, `W_hh`,
`b_h`, ...) as tensors, weights `(in, out)` so the math reads `X @ W`; `X: (B, I)` is one
time step. Each step returns the new state: `H: (B, H)`, or for LSTM the pair `(H, C)`.
"""
from __future__ import annotations

import functools

import torch

from common.config import CELLS, GRU_VARIANTS, check_activation, check_choice

ACTIVATION_FNS = {"tanh": torch.tanh, "relu": torch.relu}


def rnn_step(p, X, H, activation="tanh"):
    """d2l's RNN step: `H' = tanh(X W_xh + H W_hh + b_h)` (or relu); X: (B, I), H: (B, H)."""
    return ACTIVATION_FNS[activation](X @ p["W_xh"] + H @ p["W_hh"] + p["b_h"])


def lstm_step(p, X, state):
    """d2l's LSTM step; X: (B, I), state: (H, C) each (B, H) -> (H', C')."""
    H, C = state
    I = torch.sigmoid(X @ p["W_xi"] + H @ p["W_hi"] + p["b_i"])
    F = torch.sigmoid(X @ p["W_xf"] + H @ p["W_hf"] + p["b_f"])
    O = torch.sigmoid(X @ p["W_xo"] + H @ p["W_ho"] + p["b_o"])
    C_tilde = torch.tanh(X @ p["W_xc"] + H @ p["W_hc"] + p["b_c"])
    C = F * C + I * C_tilde
    H = O * torch.tanh(C)
    return H, C


def gru_step(p, X, H, variant="reset_after"):
    """d2l's GRU step with the candidate of `variant`; X: (B, I), H: (B, H) -> H'."""
    Z = torch.sigmoid(X @ p["W_xz"] + H @ p["W_hz"] + p["b_z"])
    R = torch.sigmoid(X @ p["W_xr"] + H @ p["W_hr"] + p["b_r"])
    if variant == "reset_after":
        # The built-ins' form: the reset gate scales the recurrent projection, bias included.
        H_tilde = torch.tanh(X @ p["W_xh"] + p["b_h"] + R * (H @ p["W_hh"] + p["b_hn"]))
    elif variant == "reset_before":
        # d2l's form: the reset gate scales H before the projection.
        H_tilde = torch.tanh(X @ p["W_xh"] + p["b_h"] + (R * H) @ p["W_hh"] + p["b_hn"])
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
