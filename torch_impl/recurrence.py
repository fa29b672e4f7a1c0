"""The recurrences with a hand-written backward (`torch.autograd.Function`): the fast scratch
stack's (layers.fast_forward) and the ladder's `hand_vjp` and `packed` rungs; the counterpart of
jax_impl/recurrence.py.

Autograd through the loop forms the weight gradient step by step, `dW_h += H_{t-1}^T dG_t`, a
`(H, B) x (B, G*H)` product with only B=32 to sum over, plus an accumulation, per step. Here the
forward loop (TorchScript) stores each step's gate activations (and LSTM's cell state); the
gates' local derivatives are formed for all steps at once; the reverse loop carries only the
state gradients, a few operators and one `dG_t W_h^T` per step; and the weight gradient is
formed once after it, `dW_h = H_prev^T dG` over all T*B rows. The math is autograd's; only the
order of summation differs. Gates are fused in the contract's order: `XP: (T, B, G*H)` holds
every step's input side `X_t W_x + b` (RNN h; LSTM i, f, o, c; GRU z, r, h).

`packed=True` runs every recurrent product through oneDNN's inner product with the weight
reordered once per call into oneDNN's blocked layout (`torch.ops.mkldnn._reorder_linear_weight`,
`_linear_pointwise`: the kernels torch's own oneDNN paths use) instead of `torch.addmm`/`matmul`
(MKL): the same arithmetic. oneDNN packs float32 on the CPU only; elsewhere (`packable` is
False) the plain products run.

The reset_before GRU multiplies `(R * H) W_hh`, a second product that waits for the first;
`reset_before_loop` runs it hoisted and fused but under autograd.
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


def forward_weight(W_h: torch.Tensor, batch: int, packed: bool) -> torch.Tensor:
    """`W_h` as the forward loop multiplies by it: oneDNN's packed `W_h^T`, or itself."""
    return pack(W_h.t(), batch) if packed else W_h


def backward_weight(W_h: torch.Tensor, batch: int, packed: bool) -> torch.Tensor:
    """`W_h^T` as the reverse loop multiplies by it: oneDNN's packed `W_h`, or contiguous."""
    return pack(W_h, batch) if packed else W_h.t().contiguous()


def previous_hidden(H0: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The hidden state each step started from, as `(T*B, H)` rows."""
    return torch.cat([H0[None], Y[:-1]]).reshape(-1, H0.shape[1])


def weight_grad(H_prev: torch.Tensor, dG: torch.Tensor, packed: bool) -> torch.Tensor:
    """The weight gradient of every step at once: `H_prev^T dG`, (H, T*B) @ (T*B, G*H)."""
    dG_rows = dG.reshape(-1, dG.shape[-1])
    return onednn_matmul_t(H_prev, dG_rows) if packed else H_prev.t() @ dG_rows


class HandLSTM(torch.autograd.Function):
    """`(XP (T, B, 4H), W_h (H, 4H), H0, C0, packed)` -> `(Y (T, B, H), H_T, C_T)`."""

    @staticmethod
    def forward(ctx, XP, W_h, H0, C0, packed):
        ctx.packed = packed
        W = forward_weight(W_h, H0.shape[0], packed)
        Y, Cs, tanh_Cs, acts = scripted()[0](XP, W, H0, C0, packed)
        ctx.save_for_backward(W_h, H0, C0, Y, Cs, tanh_Cs, acts)
        return Y, Y[-1], Cs[-1]

    @staticmethod
    def backward(ctx, dY, dH_T, dC_T):
        W_h, H0, C0, Y, Cs, tanh_Cs, acts = ctx.saved_tensors
        dY = torch.zeros_like(Y) if dY is None else dY
        dH_T = torch.zeros_like(H0) if dH_T is None else dH_T
        dC_T = torch.zeros_like(C0) if dC_T is None else dC_T
        W_hT = backward_weight(W_h, H0.shape[0], ctx.packed)
        K, P, F = local_derivatives(acts, Cs, tanh_Cs, C0)
        dG, dH0, dC0 = scripted()[1](dY, dH_T, dC_T, W_hT, K, P, F, ctx.packed)
        return dG, weight_grad(previous_hidden(H0, Y), dG, ctx.packed), dH0, dC0, None


def hand_lstm(XP, W_h, H0, C0, packed: bool = False):
    """`HandLSTM.apply`: `(Y, H_T, C_T)` with the hand-written backward; `packed` runs the
    recurrent products through oneDNN where `packable` (else the plain products)."""
    return HandLSTM.apply(XP, W_h, H0, C0, packed and packable(W_h))


def product(A: torch.Tensor, W: torch.Tensor, packed: bool) -> torch.Tensor:
    """`A @ W`; `packed`: `W` is oneDNN's packed `W^T` (`pack`)."""
    if packed:
        return torch.ops.mkldnn._linear_pointwise(A, W, None, "none", [], "")
    return torch.mm(A, W)


def product_add(C: torch.Tensor, A: torch.Tensor, W: torch.Tensor, packed: bool) -> torch.Tensor:
    """`C + A @ W` in one call; `packed` as in `product`."""
    if packed:
        return torch.ops.mkldnn._linear_pointwise(A, C, W, None, "add")
    return torch.addmm(C, A, W)


def rnn_forward_loop(XP: torch.Tensor, W_h: torch.Tensor, H: torch.Tensor, packed: bool = False):
    """`XP: (T, B, H)` -> `Y: (T, B, H)`, `H_t = tanh(XP_t + H_{t-1} W_h)` written in place."""
    Y = XP.new_empty(XP.shape)
    for t in range(XP.shape[0]):
        H = torch.tanh(product_add(XP[t], H, W_h, packed), out=Y[t])
    return Y


def rnn_backward_loop(dY: torch.Tensor, dH: torch.Tensor, W_hT: torch.Tensor, D: torch.Tensor,
                      packed: bool = False):
    """`dY`, `dH_T` and `D = 1 - Y^2` -> `(dA (T, B, H), dH0)`, `dA` the pre-activations'
    gradient: two operators and one product per step."""
    dA = D.new_empty(D.shape)
    for t in range(dY.shape[0] - 1, -1, -1):
        a = torch.mul(dH + dY[t], D[t], out=dA[t])
        dH = product(a, W_hT, packed)
    return dA, dH


def gru_forward_loop(XP: torch.Tensor, W_h: torch.Tensor, b_hn: torch.Tensor, H: torch.Tensor,
                     packed: bool = False):
    """The reset_after GRU: `XP: (T, B, 3H)` -> `(Y (T, B, H), acts (T, B, 3H), Q (T, B, H))`,
    `acts` the activated gates (Z, R, candidate N), `Q = H W_hh + b_hn` (what R scales)."""
    T, B, n = XP.shape[0], H.shape[0], H.shape[1]
    Y, acts, Q = XP.new_empty((T, B, n)), XP.new_empty(XP.shape), XP.new_empty((T, B, n))
    for t in range(T):
        hh = product(H, W_h, packed)
        g, x = acts[t], XP[t]
        torch.sigmoid(x[:, :2 * n] + hh[:, :2 * n], out=g[:, :2 * n])
        q = torch.add(hh[:, 2 * n:], b_hn, out=Q[t])
        N = torch.tanh(torch.addcmul(x[:, 2 * n:], g[:, n:2 * n], q), out=g[:, 2 * n:])
        H = torch.addcmul(N, g[:, :n], H - N, out=Y[t])  # Z H + (1 - Z) N
    return Y, acts, Q


def gru_backward_loop(dY: torch.Tensor, dH: torch.Tensor, W_hT: torch.Tensor, P: torch.Tensor,
                      Z: torch.Tensor, packed: bool = False):
    """The reverse recurrence -> `(dHH (T, B, 3H), dHs (T, B, H), dH0)`: `dHH` the gradient of
    `H W_h` (z, r, h blocks), `dHs` each step's total `dH`; `dHH_t = [dH, dH, dH] * P_t`,
    `dH_{t-1} = dH Z_t + dHH_t W_h^T`."""
    dHH, dHs = P.new_empty(P.shape), dY.new_empty(dY.shape)
    for t in range(dY.shape[0] - 1, -1, -1):
        dH = torch.add(dH, dY[t], out=dHs[t])
        g = torch.mul(dH.repeat(1, 3), P[t], out=dHH[t])
        dH = product_add(dH * Z[t], g, W_hT, packed)
    return dHH, dHs, dH


@functools.lru_cache(maxsize=None)
def scripted_cells():
    """The RNN's and GRU's loops compiled by TorchScript (once per process):
    `{"rnn": (forward, backward), "gru": (forward, backward)}`."""
    script = torch.jit.script
    return {"rnn": (script(rnn_forward_loop), script(rnn_backward_loop)),
            "gru": (script(gru_forward_loop), script(gru_backward_loop))}


class HandRNN(torch.autograd.Function):
    """`(XP (T, B, H), W_h (H, H), H0, packed)` -> `(Y (T, B, H), H_T)`."""

    @staticmethod
    def forward(ctx, XP, W_h, H0, packed):
        ctx.packed = packed
        Y = scripted_cells()["rnn"][0](XP, forward_weight(W_h, H0.shape[0], packed), H0, packed)
        ctx.save_for_backward(W_h, H0, Y)
        return Y, Y[-1]

    @staticmethod
    def backward(ctx, dY, dH_T):
        W_h, H0, Y = ctx.saved_tensors
        dY = torch.zeros_like(Y) if dY is None else dY
        dH_T = torch.zeros_like(H0) if dH_T is None else dH_T
        W_hT = backward_weight(W_h, H0.shape[0], ctx.packed)
        dA, dH0 = scripted_cells()["rnn"][1](dY, dH_T, W_hT, 1 - Y * Y, ctx.packed)
        return dA, weight_grad(previous_hidden(H0, Y), dA, ctx.packed), dH0, None


def gru_local_derivatives(acts: torch.Tensor, Q: torch.Tensor, H_prev: torch.Tensor):
    """For every step at once: `P` with `dHH = [dH, dH, dH] * P` and `Bn` with the candidate's
    input-side gradient `dH * Bn`: `Bn = (1 - Z)(1 - N^2)`, `P = [(H_prev - N) Z (1 - Z),
    Bn Q R (1 - R), Bn R]`."""
    n = Q.shape[-1]
    Z, R, N = (acts[..., k * n:(k + 1) * n] for k in range(3))
    Bn = (1 - Z) * (1 - N * N)
    P = torch.cat([(H_prev - N) * Z * (1 - Z), Bn * Q * R * (1 - R), Bn * R], -1)
    return P, Bn


class HandGRU(torch.autograd.Function):
    """The reset_after GRU: `(XP (T, B, 3H), W_h (H, 3H), b_hn (H), H0, packed)` ->
    `(Y (T, B, H), H_T)`."""

    @staticmethod
    def forward(ctx, XP, W_h, b_hn, H0, packed):
        ctx.packed = packed
        W = forward_weight(W_h, H0.shape[0], packed)
        Y, acts, Q = scripted_cells()["gru"][0](XP, W, b_hn, H0, packed)
        ctx.save_for_backward(W_h, H0, Y, acts, Q)
        return Y, Y[-1]

    @staticmethod
    def backward(ctx, dY, dH_T):
        W_h, H0, Y, acts, Q = ctx.saved_tensors
        n = H0.shape[1]
        dY = torch.zeros_like(Y) if dY is None else dY
        dH_T = torch.zeros_like(H0) if dH_T is None else dH_T
        H_prev = previous_hidden(H0, Y)
        P, Bn = gru_local_derivatives(acts, Q, H_prev.reshape(Y.shape))
        W_hT = backward_weight(W_h, H0.shape[0], ctx.packed)
        dHH, dHs, dH0 = scripted_cells()["gru"][1](dY, dH_T, W_hT, P, acts[..., :n].contiguous(),
                                                    ctx.packed)
        dXP = torch.cat([dHH[..., :2 * n], dHs * Bn], -1)
        db_hn = dHH[..., 2 * n:].sum((0, 1))
        return dXP, weight_grad(H_prev, dHH, ctx.packed), db_hn, dH0, None


def hand_rnn(XP, W_h, H0, packed: bool = False):
    """`HandRNN.apply`: `(Y, H_T)` with the hand-written backward (`packed` as `hand_lstm`)."""
    return HandRNN.apply(XP, W_h, H0, packed and packable(W_h))


def hand_gru(XP, W_h, b_hn, H0, packed: bool = False):
    """`HandGRU.apply`: `(Y, H_T)` with the hand-written backward (`packed` as `hand_lstm`)."""
    return HandGRU.apply(XP, W_h, b_hn, H0, packed and packable(W_h))


def reset_before_loop(XP: torch.Tensor, W_h: torch.Tensor, b_hn: torch.Tensor, H: torch.Tensor):
    """The reset_before GRU over `XP: (T, B, 3H)` with fused `W_h: (H, 3H)` -> `Y (T, B, H)`:
    `H W_h` for z and r, then `(R H) W_hh`; differentiated by autograd."""
    n, outputs = H.shape[1], []
    for t in range(XP.shape[0]):
        x = XP[t]
        ZR = torch.sigmoid(torch.addmm(x[:, :2 * n], H, W_h[:, :2 * n]))
        Z, R = ZR[:, :n], ZR[:, n:]
        N = torch.tanh(torch.addmm(x[:, 2 * n:] + b_hn, R * H, W_h[:, 2 * n:]))
        H = N + Z * (H - N)
        outputs.append(H)
    return torch.stack(outputs)


@functools.lru_cache(maxsize=None)
def scripted_reset_before():
    """`reset_before_loop` compiled by TorchScript (once per process)."""
    return torch.jit.script(reset_before_loop)
