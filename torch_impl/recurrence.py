"""The LSTM recurrence with a hand-written backward (`torch.autograd.Function`): the ladder's
`hand_vjp` rung, the counterpart of jax_impl/recurrence.py.

Autograd through the loop forms the weight gradient step by step, `dW_h += H_{t-1}^T dG_t`, a
`(H, B) x (B, 4H)` product with only B=32 to sum over, plus an accumulation, per step. Here the
forward loop (TorchScript) stores each step's gate activations and cell state; the gates' local
derivatives are formed for all steps at once; the reverse loop carries only the state
gradients, six operators and one `dG_t W_h^T` per step; and the weight gradient is formed once
after it, `dW_h = H_prev^T dG` over all T*B rows. The math is autograd's; only the order of
summation differs. Gates are fused in the contract's order i, f, o, c: `XP: (T, B, 4H)`.

`packed=True` (the ladder's `packed` rung) runs every recurrent product through oneDNN's inner
product with the weight reordered once per call into oneDNN's blocked layout
(`torch.ops.mkldnn._reorder_linear_weight`, `_linear_pointwise`: the kernels torch's own
oneDNN paths use) instead of `torch.addmm`/`matmul` (MKL): the same arithmetic. oneDNN packs
float32 on the CPU only; elsewhere (`packable` is False) the plain products run.
"""
from __future__ import annotations

import functools

import torch


def forward_loop(XP: torch.Tensor, W_h: torch.Tensor, H: torch.Tensor, C: torch.Tensor,
                 packed: bool = False):
    """`XP: (T, B, 4H)` -> `(Y, cells, tanh_cells)` each `(T, B, H)` and `gates (T, B, 4H)`:
    every step's hidden and cell state, `tanh` of the cell, and the activated gates (i, f, o
    sigmoid, c~ tanh), each written in place into its preallocated `(T, ...)` buffer (no stack
    of T pieces afterwards). `packed`: `W_h` is oneDNN's packed `W_h^T` (`pack`), and
    `XP_t + H W_h` one fused oneDNN call."""
    T, B, n = XP.shape[0], H.shape[0], H.shape[1]
    Y, Cs, tanh_Cs = XP.new_empty((T, B, n)), XP.new_empty((T, B, n)), XP.new_empty((T, B, n))
    acts = XP.new_empty((T, B, 4 * n))
    for t in range(T):
        if packed:
            pre = torch.ops.mkldnn._linear_pointwise(H, XP[t], W_h, None, "add")
        else:
            pre = torch.addmm(XP[t], H, W_h)
        g = acts[t]
        torch.sigmoid(pre[:, :3 * n], out=g[:, :3 * n])
        torch.tanh(pre[:, 3 * n:], out=g[:, 3 * n:])
        C = torch.addcmul(g[:, n:2 * n] * C, g[:, :n], g[:, 3 * n:], out=Cs[t])
        H = torch.mul(g[:, 2 * n:3 * n], torch.tanh(C, out=tanh_Cs[t]), out=Y[t])
    return Y, Cs, tanh_Cs, acts


def local_derivatives(acts: torch.Tensor, Cs: torch.Tensor, tanh_Cs: torch.Tensor,
                      C0: torch.Tensor):
    """What the reverse loop multiplies by, for every step at once (a few `(T, B, 4H)` ops
    instead of ~20 small ones per step inside the loop): `K = o (1 - tanh(c)^2)`
    (`dC += dH K`), `P` with `dG = [dC, dC, dH, dC] * P` (the gates' pre-activation
    gradients), and `F` (`dC_prev = dC f`)."""
    n = Cs.shape[-1]
    I, F, O, C_tilde = (acts[..., k * n:(k + 1) * n] for k in range(4))
    C_prev = torch.cat([C0[None], Cs[:-1]])
    K = O * (1 - tanh_Cs * tanh_Cs)
    P = torch.cat([C_tilde * I * (1 - I), C_prev * F * (1 - F), tanh_Cs * O * (1 - O),
                   I * (1 - C_tilde * C_tilde)], -1)
    return K, P, F


def backward_loop(dY: torch.Tensor, dH: torch.Tensor, dC: torch.Tensor, W_hT: torch.Tensor,
                  K: torch.Tensor, P: torch.Tensor, F: torch.Tensor, packed: bool = False):
    """The reverse recurrence: `dY (T, B, H)`, the final states' gradients and
    `local_derivatives` -> `(dG (T, B, 4H), dH0, dC0)`, `dG` the gradients of the gates'
    pre-activations: six operators per step. `packed`: `W_hT` is oneDNN's packed `W_h`
    (`pack`)."""
    dGs = P.new_empty(P.shape)
    for t in range(dY.shape[0] - 1, -1, -1):
        dH = dH + dY[t]
        dC = torch.addcmul(dC, dH, K[t])
        dG = torch.mul(torch.cat([dC, dC, dH, dC], 1), P[t], out=dGs[t])
        dC = dC * F[t]
        if packed:
            dH = torch.ops.mkldnn._linear_pointwise(dG, W_hT, None, "none", [], "")
        else:
            dH = dG @ W_hT
    return dGs, dH, dC


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
        Y, Cs, tanh_Cs, acts = scripted()[0](XP, W, H0, C0, packed)
        ctx.save_for_backward(W_h, H0, C0, Y, Cs, tanh_Cs, acts)
        return Y, Y[-1], Cs[-1]

    @staticmethod
    def backward(ctx, dY, dH_T, dC_T):
        W_h, H0, C0, Y, Cs, tanh_Cs, acts = ctx.saved_tensors
        dY = torch.zeros_like(Y) if dY is None else dY
        dH_T = torch.zeros_like(H0) if dH_T is None else dH_T
        dC_T = torch.zeros_like(C0) if dC_T is None else dC_T
        W_hT = pack(W_h, H0.shape[0]) if ctx.packed else W_h.t().contiguous()
        K, P, F = local_derivatives(acts, Cs, tanh_Cs, C0)
        dG, dH0, dC0 = scripted()[1](dY, dH_T, dC_T, W_hT, K, P, F, ctx.packed)
        H_prev = torch.cat([H0[None], Y[:-1]]).reshape(-1, H0.shape[1])
        dG_rows = dG.reshape(-1, dG.shape[-1])
        # The weight gradient of every step at once: (H, T*B) @ (T*B, 4H).
        dW_h = onednn_matmul_t(H_prev, dG_rows) if ctx.packed else H_prev.t() @ dG_rows
        return dG, dW_h, dH0, dC0, None


def hand_lstm(XP, W_h, H0, C0, packed: bool = False):
    """`HandLSTM.apply`: `(Y, H_T, C_T)` with the hand-written backward; `packed` runs the
    recurrent products through oneDNN where `packable` (else the plain products)."""
    return HandLSTM.apply(XP, W_h, H0, C0, packed and packable(W_h))
