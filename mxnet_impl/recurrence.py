"""The recurrences with a hand-written backward: the fast scratch stack's (layers.fast_forward)
and the ladder's `hand_vjp` rung (rungs.hand_forward_backward); the counterpart of
jax_impl/recurrence.py.

Autograd through the loop forms the weight gradient step by step (a `FullyConnected` backward
summing over only B=32 rows, then an accumulation, per step). Here the forward loop stores each
step's gate activations (and LSTM's cell state); the reverse loop carries only the state
gradients, one product with `W_h^T` per step; and the weight gradient is formed once after it
over all T*B rows. The loops are HybridBlocks without parameters, hybridized (one cached graph
each, every product through `FullyConnected`, i.e. oneDNN on CPU), unrolled over T. The math is
autograd's; only the order of summation differs. Gates are fused in the contract's order (RNN
h; LSTM i, f, o, c; GRU z, r, h); `W_h` is stored `(G*H, H)`, as `FullyConnected` wants it.

`HandRecurrence` (an `mx.autograd.Function`) puts the two loops under autograd for the fast
stack. It saves a copy of `W_h`, never the caller's array: MXNet 1.9.1's engine deadlocked when
an optimizer wrote in place into an array that a pending custom backward had saved. The
reset_before GRU's second product `(R * H) W_hh` waits for the first; `ResetBeforeLoop` runs it
hoisted and fused, hybridized, under autograd.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np

from ._mx import mx

nd = mx.nd


def sigmoid(F, X):
    """The logistic function through `Activation`, oneDNN's eltwise kernel on CPU: several
    times faster than `F.sigmoid` on these shapes (docs/performance.md)."""
    return F.Activation(X, act_type="sigmoid")


def tanh(F, X):
    """`tanh` through `Activation`, for the same reason."""
    return F.Activation(X, act_type="tanh")


def unstack(F, X, steps: int):
    """`X: (T, ...)` -> T arrays `(...)` through one `split` (whose backward is one concat)."""
    parts = F.split(X, num_outputs=steps, axis=0, squeeze_axis=True)
    return [parts] if steps == 1 else list(parts)


def cols(F, X, start: int, stop: int):
    return F.slice_axis(X, axis=1, begin=start, end=stop)


class Loop(mx.gluon.HybridBlock):
    """A parameterless loop unrolled over `steps` time steps of `hidden` units."""

    def __init__(self, hidden: int, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.steps = hidden, steps


class ForwardLoop(Loop):
    """`(XP (T, B, 4H), W_h (4H, H), H0, C0)` -> `(Y, cells, gates)`, each `(T, B, ...)`:
    every step's hidden and cell state and activated gates (i, f, o sigmoid, c~ tanh)."""

    def hybrid_forward(self, F, XP, W_h, H, C):
        n, Hs, Cs, acts = self.hidden, [], [], []
        for xp in unstack(F, XP, self.steps):
            pre = xp + F.FullyConnected(H, W_h, no_bias=True, num_hidden=4 * n)
            gates = F.concat(sigmoid(F, cols(F, pre, 0, 3 * n)),
                             tanh(F, cols(F, pre, 3 * n, 4 * n)), dim=1)
            C = cols(F, gates, n, 2 * n) * C + cols(F, gates, 0, n) * cols(F, gates, 3 * n, 4 * n)
            H = cols(F, gates, 2 * n, 3 * n) * tanh(F, C)
            Hs.append(H)
            Cs.append(C)
            acts.append(gates)
        return F.stack(*Hs, axis=0), F.stack(*Cs, axis=0), F.stack(*acts, axis=0)


class BackwardLoop(Loop):
    """The reverse recurrence and the weight gradient: `(dY, dH_T, dC_T, W_h, H0, C0, Y, cells,
    gates)` -> `(dG (T, B, 4H), dW_h (4H, H), dH0, dC0)`, `dG` the pre-activations' gradient."""

    def hybrid_forward(self, F, dY, dH, dC, W_h, H0, C0, Y, Cs, acts):
        n, T = self.hidden, self.steps
        W_hT = F.transpose(W_h)  # (H, 4H): FullyConnected(dG, W_hT) = dG @ W_h^T
        dYs, cells, gates = unstack(F, dY, T), unstack(F, Cs, T), unstack(F, acts, T)
        dGs = [None] * T
        for t in reversed(range(T)):
            g = gates[t]
            I, Fg, O, C_tilde = (cols(F, g, k * n, (k + 1) * n) for k in range(4))
            C_prev = cells[t - 1] if t > 0 else C0
            tanh_C = tanh(F, cells[t])
            dH = dH + dYs[t]
            dC = dC + dH * O * (1 - tanh_C * tanh_C)
            dGs[t] = F.concat(dC * C_tilde * I * (1 - I), dC * C_prev * Fg * (1 - Fg),
                              dH * tanh_C * O * (1 - O), dC * I * (1 - C_tilde * C_tilde), dim=1)
            dC = dC * Fg
            dH = F.FullyConnected(dGs[t], W_hT, no_bias=True, num_hidden=n)
        dG = F.stack(*dGs, axis=0)
        H_prev = F.concat(F.expand_dims(H0, axis=0), F.slice_axis(Y, axis=0, begin=0, end=T - 1),
                          dim=0) if T > 1 else F.expand_dims(H0, axis=0)
        # The weight gradient of every step at once: dG^T (4H, T*B) @ H_prev (T*B, H).
        dW_h = F.FullyConnected(F.transpose(F.reshape(dG, shape=(-1, 4 * n))),
                                F.transpose(F.reshape(H_prev, shape=(-1, n))),
                                no_bias=True, num_hidden=n)
        return dG, dW_h, dH, dC


def make_loops(hidden: int, steps: int, hybridize: dict):
    """The two loops for `hidden` units and `steps` steps, hybridized with `hybridize`."""
    loops = ForwardLoop(hidden, steps), BackwardLoop(hidden, steps)
    for loop in loops:
        loop.hybridize(**hybridize)
    return loops


def previous(F, H0, Y, steps: int):
    """The hidden state each step started from: `(T, B, H)`."""
    first = F.expand_dims(H0, axis=0)
    if steps == 1:
        return first
    return F.concat(first, F.slice_axis(Y, axis=0, begin=0, end=steps - 1), dim=0)


def weight_grad(F, dG, H_prev, n: int):
    """The weight gradient of every step at once, `dG^T (G*H, T*B) @ H_prev (T*B, H)`, in
    `FullyConnected`'s `(G*H, H)` layout."""
    rows = lambda A: F.transpose(F.reshape(A, shape=(-1, 0), reverse=True))
    return F.FullyConnected(rows(dG), rows(H_prev), no_bias=True, num_hidden=n)


class RNNForwardLoop(Loop):
    """`(XP (T, B, H), W_h (H, H), H0)` -> `Y (T, B, H)`, `H_t = tanh(XP_t + H_{t-1} W_h)`."""

    def hybrid_forward(self, F, XP, W_h, H):
        Hs = []
        for xp in unstack(F, XP, self.steps):
            H = tanh(F, xp + F.FullyConnected(H, W_h, no_bias=True, num_hidden=self.hidden))
            Hs.append(H)
        return F.stack(*Hs, axis=0)


class RNNBackwardLoop(Loop):
    """`(dY, dH_T, W_h, H0, Y)` -> `(dA (T, B, H), dW_h (H, H), dH0)`, `dA` the
    pre-activations' gradient."""

    def hybrid_forward(self, F, dY, dH, W_h, H0, Y):
        n, T = self.hidden, self.steps
        W_hT = F.transpose(W_h)
        dYs, Ys, dAs = unstack(F, dY, T), unstack(F, Y, T), [None] * T
        for t in reversed(range(T)):
            dAs[t] = (dH + dYs[t]) * (1 - Ys[t] * Ys[t])
            dH = F.FullyConnected(dAs[t], W_hT, no_bias=True, num_hidden=n)
        dA = F.stack(*dAs, axis=0)
        return dA, weight_grad(F, dA, previous(F, H0, Y, T), n), dH


class GRUForwardLoop(Loop):
    """The reset_after GRU: `(XP (T, B, 3H), W_h (3H, H), b_hn, H0)` -> `(Y (T, B, H), acts
    (T, B, 3H), Q (T, B, H))`: the activated gates (Z, R, candidate N) and `Q = H W_hh + b_hn`."""

    def hybrid_forward(self, F, XP, W_h, b_hn, H):
        n, Hs, acts, Qs = self.hidden, [], [], []
        for xp in unstack(F, XP, self.steps):
            hh = F.FullyConnected(H, W_h, no_bias=True, num_hidden=3 * n)
            ZR = sigmoid(F, cols(F, xp, 0, 2 * n) + cols(F, hh, 0, 2 * n))
            Q = F.broadcast_add(cols(F, hh, 2 * n, 3 * n), F.reshape(b_hn, shape=(1, -1)))
            N = tanh(F, cols(F, xp, 2 * n, 3 * n) + cols(F, ZR, n, 2 * n) * Q)
            H = N + cols(F, ZR, 0, n) * (H - N)  # Z H + (1 - Z) N
            Hs.append(H)
            acts.append(F.concat(ZR, N, dim=1))
            Qs.append(Q)
        return F.stack(*Hs, axis=0), F.stack(*acts, axis=0), F.stack(*Qs, axis=0)


class GRUBackwardLoop(Loop):
    """`(dY, dH_T, W_h, H0, Y, acts, Q)` -> `(dXP (T, B, 3H), dW_h (3H, H), db_hn, dH0)`."""

    def hybrid_forward(self, F, dY, dH, W_h, H0, Y, acts, Qs):
        n, T = self.hidden, self.steps
        W_hT = F.transpose(W_h)
        H_prev = previous(F, H0, Y, T)
        dYs, gates, Q, prev = (unstack(F, A, T) for A in (dY, acts, Qs, H_prev))
        dXPs, dHHs = [None] * T, [None] * T
        for t in reversed(range(T)):
            Z, R, N = (cols(F, gates[t], k * n, (k + 1) * n) for k in range(3))
            dH = dH + dYs[t]
            dZ = dH * (prev[t] - N) * Z * (1 - Z)
            dN = dH * (1 - Z) * (1 - N * N)
            dR = dN * Q[t] * R * (1 - R)
            dXPs[t] = F.concat(dZ, dR, dN, dim=1)
            dHHs[t] = F.concat(dZ, dR, dN * R, dim=1)
            dH = dH * Z + F.FullyConnected(dHHs[t], W_hT, no_bias=True, num_hidden=n)
        dHH = F.stack(*dHHs, axis=0)
        db_hn = F.sum(F.slice_axis(dHH, axis=2, begin=2 * n, end=3 * n), axis=(0, 1))
        return F.stack(*dXPs, axis=0), weight_grad(F, dHH, H_prev, n), db_hn, dH


class ResetBeforeLoop(Loop):
    """The reset_before GRU: `(XP (T, B, 3H), W_h (3H, H), b_hn, H0)` -> `Y (T, B, H)`, `H W_h`
    for z and r, then `(R H) W_hh`; differentiated by autograd."""

    def hybrid_forward(self, F, XP, W_h, b_hn, H):
        n, Hs = self.hidden, []
        W_zr, W_hh = F.slice_axis(W_h, axis=0, begin=0, end=2 * n), F.slice_axis(
            W_h, axis=0, begin=2 * n, end=3 * n)
        for xp in unstack(F, XP, self.steps):
            ZR = sigmoid(F, cols(F, xp, 0, 2 * n)
                         + F.FullyConnected(H, W_zr, no_bias=True, num_hidden=2 * n))
            R_H = cols(F, ZR, n, 2 * n) * H
            N = tanh(F, F.broadcast_add(cols(F, xp, 2 * n, 3 * n), F.reshape(b_hn, shape=(1, -1)))
                     + F.FullyConnected(R_H, W_hh, no_bias=True, num_hidden=n))
            H = N + cols(F, ZR, 0, n) * (H - N)
            Hs.append(H)
        return F.stack(*Hs, axis=0)


LOOPS = {"rnn": (RNNForwardLoop, RNNBackwardLoop), "lstm": (ForwardLoop, BackwardLoop),
         "gru": (GRUForwardLoop, GRUBackwardLoop)}
HYBRIDIZE = {"static_alloc": True, "static_shape": True}
# MXNet runs custom backwards on its own threads, several at once (a bidirectional stack); the
# first call of a cached loop builds its graph inside the block's name scope, which two threads
# entering at once corrupt. Calls are asynchronous pushes, so holding the lock costs little.
BACKWARD_LOCK = threading.Lock()


# (cell, hidden, steps, batch, dtype) -> that shape's hybridized loops (static shapes: one
# cached graph each); "reset_before" holds one loop, the others (forward, backward).
LOOP_CACHE = {}


def cached_loops(cell: str, hidden: int, steps: int, batch: int, dtype: str):
    """The hybridized loops of `cell` for one shape, made on first use."""
    key = (cell, hidden, steps, batch, dtype)
    if key not in LOOP_CACHE:
        made = (ResetBeforeLoop,) if cell == "reset_before" else LOOPS[cell]
        loops = tuple(Loop(hidden, steps) for Loop in made)
        for loop in loops:
            loop.hybridize(**HYBRIDIZE)
        LOOP_CACHE[key] = loops[0] if cell == "reset_before" else loops
    return LOOP_CACHE[key]


def cached_blocks(cell: str, hidden: int) -> list:
    """Every loop made so far for `cell` at `hidden` units (for operator counts)."""
    found = [v for k, v in LOOP_CACHE.items() if k[:2] == (cell, hidden)]
    return [b for v in found for b in (v if isinstance(v, tuple) else (v,))]


def loops_for(cell: str, XP, H0):
    """The cached loops of `cell` for `XP: (T, B, G*H)` and a `(B, H)` state."""
    return cached_loops(cell, H0.shape[1], XP.shape[0], H0.shape[0], np.dtype(XP.dtype).name)


class HandRecurrence(mx.autograd.Function):
    """`(XP (T, B, G*H), W_h (G*H, H), *extra, H0[, C0])` -> `(Y (T, B, H), H_T[, C_T])` with
    the hand-written backward; `extra`: GRU's `b_hn`."""

    def __init__(self, cell: str):
        super().__init__()
        self.cell = cell

    def forward(self, XP, W_h, *rest):
        forward_loop = loops_for(self.cell, XP, rest[-1])[0]
        W_h = W_h.copy()  # see the module docstring
        out = forward_loop(XP, W_h, *rest)
        out = out if isinstance(out, (list, tuple)) else [out]
        self.save_for_backward(W_h, *rest, *out)
        last = lambda A: A[A.shape[0] - 1].copy()  # a view of an output confuses autograd
        finals = [last(out[0])] + ([last(out[1])] if self.cell == "lstm" else [])
        return (out[0], *finals)

    def backward(self, dY, *dfinals):
        saved = self.saved_tensors
        backward_loop = loops_for(self.cell, dY, saved[1 if self.cell != "gru" else 2])[1]
        with BACKWARD_LOCK, warnings.catch_warnings():
            # with one step, the loop has no use for Y (the previous states are H0 alone)
            warnings.filterwarnings("ignore", ".*input to HybridBlock is not used", UserWarning)
            return self._backward(backward_loop, dY, dfinals, saved)

    def _backward(self, loop, dY, dfinals, saved):
        if self.cell == "rnn":
            W_h, H0, Y = saved
            dA, dW_h, dH0 = loop(dY, dfinals[0], W_h, H0, Y)
            return dA, dW_h, dH0
        if self.cell == "lstm":
            W_h, H0, C0, Y, Cs, acts = saved
            dG, dW_h, dH0, dC0 = loop(dY, dfinals[0], dfinals[1], W_h, H0, C0, Y, Cs, acts)
            return dG, dW_h, dH0, dC0
        W_h, b_hn, H0, Y, acts, Q = saved
        dXP, dW_h, db_hn, dH0 = loop(dY, dfinals[0], W_h, H0, Y, acts, Q)
        return dXP, dW_h, db_hn, dH0
