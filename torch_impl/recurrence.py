"""The LSTM recurrence with a hand-written backward (`torch.autograd.Function`): the ladder's
`hand_vjp` rung, the counterpart of jax_impl/recurrence.py.

Autograd through the loop forms the weight gradient step by step, `dW_h += H_{t-1}^T dG_t`, a
`(H, B) x (B, 4H)` product with only B=32 to sum over, plus an accumulation, per step. Here the
forward loop (TorchScript) stores each step's gate activations and cell state; the reverse loop
carries only the state gradients, one `dG_t W_h^T` per step; and the weight gradient is formed
once after it, `dW_h = H_prev^T dG` over all T*B rows. The math is autograd's; only the order
of summation differs. Gates are fused in the contract's order i, f, o, c: `XP: (T, B, 4H)`.
"""
from __future__ import annotations

import functools
from typing import List

import torch


def forward_loop(XP: torch.Tensor, W_h: torch.Tensor, H: torch.Tensor, C: torch.Tensor):
    """`XP: (T, B, 4H)` -> `(Y (T, B, H), cells (T, B, H), gates (T, B, 4H))`: every step's
    hidden and cell state and its activated gates (i, f, o sigmoid, c~ tanh)."""
    n = H.shape[1]
    Hs: List[torch.Tensor] = []
    Cs: List[torch.Tensor] = []
    acts: List[torch.Tensor] = []
    for xp in XP.unbind(0):
        pre = torch.addmm(xp, H, W_h)
        gates = torch.cat([torch.sigmoid(pre[:, :3 * n]), torch.tanh(pre[:, 3 * n:])], 1)
        C = gates[:, n:2 * n] * C + gates[:, :n] * gates[:, 3 * n:]
        H = gates[:, 2 * n:3 * n] * torch.tanh(C)
        Hs.append(H)
        Cs.append(C)
        acts.append(gates)
    return torch.stack(Hs), torch.stack(Cs), torch.stack(acts)


def backward_loop(dY: torch.Tensor, dH: torch.Tensor, dC: torch.Tensor, W_hT: torch.Tensor,
                  Cs: torch.Tensor, C0: torch.Tensor, acts: torch.Tensor):
    """The reverse recurrence: `dY (T, B, H)` and the final states' gradients -> `(dG (T, B, 4H),
    dH0, dC0)`, `dG` the gradients of the gates' pre-activations."""
    n = dH.shape[1]
    dGs: List[torch.Tensor] = []
    for t in range(dY.shape[0] - 1, -1, -1):
        g = acts[t]
        I, F, O, C_tilde = g[:, :n], g[:, n:2 * n], g[:, 2 * n:3 * n], g[:, 3 * n:]
        C_prev = Cs[t - 1] if t > 0 else C0
        tanh_C = torch.tanh(Cs[t])
        dH = dH + dY[t]
        dC = dC + dH * O * (1 - tanh_C * tanh_C)
        dG = torch.cat([dC * C_tilde * I * (1 - I), dC * C_prev * F * (1 - F),
                        dH * tanh_C * O * (1 - O), dC * I * (1 - C_tilde * C_tilde)], 1)
        dC = dC * F
        dH = dG @ W_hT
        dGs.append(dG)
    dGs.reverse()
    return torch.stack(dGs), dH, dC


@functools.lru_cache(maxsize=None)
def scripted():
    """Both loops compiled by TorchScript (once per process)."""
    return torch.jit.script(forward_loop), torch.jit.script(backward_loop)


class HandLSTM(torch.autograd.Function):
    """`(XP (T, B, 4H), W_h (H, 4H), H0, C0)` -> `(Y (T, B, H), H_T, C_T)`."""

    @staticmethod
    def forward(ctx, XP, W_h, H0, C0):
        Y, Cs, acts = scripted()[0](XP, W_h, H0, C0)
        ctx.save_for_backward(W_h, H0, C0, Y, Cs, acts)
        return Y, Y[-1], Cs[-1]

    @staticmethod
    def backward(ctx, dY, dH_T, dC_T):
        W_h, H0, C0, Y, Cs, acts = ctx.saved_tensors
        dY = torch.zeros_like(Y) if dY is None else dY
        dH_T = torch.zeros_like(H0) if dH_T is None else dH_T
        dC_T = torch.zeros_like(C0) if dC_T is None else dC_T
        dG, dH0, dC0 = scripted()[1](dY, dH_T, dC_T, W_h.t().contiguous(), Cs, C0, acts)
        H_prev = torch.cat([H0[None], Y[:-1]]).reshape(-1, H0.shape[1])
        # The weight gradient of every step at once: (H, T*B) @ (T*B, 4H).
        dW_h = H_prev.t() @ dG.reshape(-1, dG.shape[-1])
        return dG, dW_h, dH0, dC0


def hand_lstm(XP, W_h, H0, C0):
    """`HandLSTM.apply`: `(Y, H_T, C_T)` with the hand-written backward."""
    return HandLSTM.apply(XP, W_h, H0, C0)
