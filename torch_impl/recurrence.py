"""The LSTM recurrence with a hand-written backward (`torch.autograd.Function`): the ladder's
`hand_vjp` rung, the counterpart of jax_impl/recurrence.py.

Autograd through the loop forms the weight gradient step by step, `dW_h += H_{t-1}^T dG_t`, a
`(H, B) x (B, 4H)` product with only B=32 to sum over, plus an accumulation, per step. Here the
forward loop (TorchScript) stores each step's gate activations and cell state; the reverse loop
carries only the state gradients, one `dG_t W_h^T` per step; and the weight gradient is formed
once after it, `dW_h = H_prev^T dG` over all T*B rows. The math is autograd's; only the order
of summation differs. Gates are fused in the contract's order i, f, o, c: `XP: (T, B, 4H)`.

`packed=True` (the ladder's `packed` rung) runs every recurrent product through oneDNN's inner
product with the weight reordered once per call into oneDNN's blocked layout
(`torch.ops.mkldnn._reorder_linear_weight`, `_linear_pointwise`: the kernels torch's own
oneDNN paths use) instead of `torch.addmm`/`matmul` (MKL): the same arithmetic. oneDNN packs
float32 on the CPU only; elsewhere (`packable` is False) the plain products run.
"""
from __future__ import annotations

import functools
from typing import List

import torch


def forward_loop(XP: torch.Tensor, W_h: torch.Tensor, H: torch.Tensor, C: torch.Tensor,
                 packed: bool = False):
    """`XP: (T, B, 4H)` -> `(Y (T, B, H), cells (T, B, H), gates (T, B, 4H))`: every step's
    hidden and cell state and its activated gates (i, f, o sigmoid, c~ tanh). `packed`: `W_h`
    is oneDNN's packed `W_h^T` (`pack`), and `XP_t + H W_h` one fused oneDNN call."""
    n = H.shape[1]
    Hs: List[torch.Tensor] = []
    Cs: List[torch.Tensor] = []
    acts: List[torch.Tensor] = []
    for xp in XP.unbind(0):
        if packed:
            pre = torch.ops.mkldnn._linear_pointwise(H, xp, W_h, None, "add")
        else:
            pre = torch.addmm(xp, H, W_h)
        gates = torch.cat([torch.sigmoid(pre[:, :3 * n]), torch.tanh(pre[:, 3 * n:])], 1)
        C = gates[:, n:2 * n] * C + gates[:, :n] * gates[:, 3 * n:]
        H = gates[:, 2 * n:3 * n] * torch.tanh(C)
        Hs.append(H)
        Cs.append(C)
        acts.append(gates)
    return torch.stack(Hs), torch.stack(Cs), torch.stack(acts)


def backward_loop(dY: torch.Tensor, dH: torch.Tensor, dC: torch.Tensor, W_hT: torch.Tensor,
                  Cs: torch.Tensor, C0: torch.Tensor, acts: torch.Tensor, packed: bool = False):
    """The reverse recurrence: `dY (T, B, H)` and the final states' gradients -> `(dG (T, B, 4H),
    dH0, dC0)`, `dG` the gradients of the gates' pre-activations. `packed`: `W_hT` is oneDNN's
    packed `W_h` (`pack`)."""
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
        if packed:
            dH = torch.ops.mkldnn._linear_pointwise(dG, W_hT, None, "none", [], "")
        else:
            dH = dG @ W_hT
        dGs.append(dG)
    dGs.reverse()
    return torch.stack(dGs), dH, dC


@functools.lru_cache(maxsize=None)
def scripted():
    """Both loops compiled by TorchScript (once per process)."""
    return torch.jit.script(forward_loop), torch.jit.script(backward_loop)


def packable(t: torch.Tensor) -> bool:
    """Whether oneDNN can pack `t`'s products: float32 on a CPU, torch built with oneDNN."""
    return (t.device.type == "cpu" and t.dtype == torch.float32
            and torch.backends.mkldnn.is_available())


def pack(weight: torch.Tensor, batch: int) -> torch.Tensor:
    """`weight (out, in)` reordered into oneDNN's blocked layout for `linear(x (batch, in))`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch)


def onednn_matmul_t(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """`A^T B` for `A (K, M)`, `B (K, N)` as one oneDNN inner product: `(M, N)` (the transposed
    views go in as they are; oneDNN reorders them faster than `.contiguous()` copies)."""
    return torch.ops.mkldnn._linear_pointwise(A.t(), B.t(), None, "none", [], "")


class HandLSTM(torch.autograd.Function):
    """`(XP (T, B, 4H), W_h (H, 4H), H0, C0, packed)` -> `(Y (T, B, H), H_T, C_T)`."""

    @staticmethod
    def forward(ctx, XP, W_h, H0, C0, packed):
        ctx.packed = packed
        W = pack(W_h.t(), H0.shape[0]) if packed else W_h
        Y, Cs, acts = scripted()[0](XP, W, H0, C0, packed)
        ctx.save_for_backward(W_h, H0, C0, Y, Cs, acts)
        return Y, Y[-1], Cs[-1]

    @staticmethod
    def backward(ctx, dY, dH_T, dC_T):
        W_h, H0, C0, Y, Cs, acts = ctx.saved_tensors
        dY = torch.zeros_like(Y) if dY is None else dY
        dH_T = torch.zeros_like(H0) if dH_T is None else dH_T
        dC_T = torch.zeros_like(C0) if dC_T is None else dC_T
        W_hT = pack(W_h, H0.shape[0]) if ctx.packed else W_h.t().contiguous()
        dG, dH0, dC0 = scripted()[1](dY, dH_T, dC_T, W_hT, Cs, C0, acts, ctx.packed)
        H_prev = torch.cat([H0[None], Y[:-1]]).reshape(-1, H0.shape[1])
        dG_rows = dG.reshape(-1, dG.shape[-1])
        # The weight gradient of every step at once: (H, T*B) @ (T*B, 4H).
        dW_h = onednn_matmul_t(H_prev, dG_rows) if ctx.packed else H_prev.t() @ dG_rows
        return dG, dW_h, dH0, dC0, None


def hand_lstm(XP, W_h, H0, C0, packed: bool = False):
    """`HandLSTM.apply`: `(Y, H_T, C_T)` with the hand-written backward; `packed` runs the
    recurrent products through oneDNN where `packable` (else the plain products)."""
    return HandLSTM.apply(XP, W_h, H0, C0, packed and packable(W_h))
