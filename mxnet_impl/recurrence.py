"""The LSTM recurrence with a hand-written backward: the ladder's `hand_vjp` rung, the
counterpart of jax_impl/recurrence.py (rungs.hand_forward_backward puts it together).

Autograd through the loop forms the weight gradient step by step (a `FullyConnected` backward
summing over only B=32 rows, then an accumulation, per step). Here the forward loop stores each
step's gate activations and cell state; the reverse loop carries only the state gradients, one
product with `W_h^T` per step; and the weight gradient is formed once after it over all T*B
rows. Both loops are HybridBlocks without parameters, hybridized (one cached graph each, every
product through `FullyConnected`, i.e. oneDNN on CPU), called outside autograd: an
`mx.autograd.Function` whose backward calls a cached graph deadlocked MXNet 1.9.1's engine. The
math is autograd's; only the order of summation differs. Gates are fused in the contract's
order i, f, o, c; `W_h` is stored `(4H, H)`, as `FullyConnected` wants it.
"""
from __future__ import annotations

from ._mx import mx


def unstack(F, X, steps: int):
    """`X: (T, ...)` -> T arrays `(...)` through one `split` (whose backward is one concat)."""
    parts = F.split(X, num_outputs=steps, axis=0, squeeze_axis=True)
    return [parts] if steps == 1 else list(parts)


def cols(F, X, start: int, stop: int):
    return F.slice_axis(X, axis=1, begin=start, end=stop)


class ForwardLoop(mx.gluon.HybridBlock):
    """`(XP (T, B, 4H), W_h (4H, H), H0, C0)` -> `(Y, cells, gates)`, each `(T, B, ...)`:
    every step's hidden and cell state and activated gates (i, f, o sigmoid, c~ tanh)."""

    def __init__(self, hidden: int, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.steps = hidden, steps

    def hybrid_forward(self, F, XP, W_h, H, C):
        n, Hs, Cs, acts = self.hidden, [], [], []
        for xp in unstack(F, XP, self.steps):
            pre = xp + F.FullyConnected(H, W_h, no_bias=True, num_hidden=4 * n)
            gates = F.concat(F.sigmoid(cols(F, pre, 0, 3 * n)), F.tanh(cols(F, pre, 3 * n, 4 * n)),
                             dim=1)
            C = cols(F, gates, n, 2 * n) * C + cols(F, gates, 0, n) * cols(F, gates, 3 * n, 4 * n)
            H = cols(F, gates, 2 * n, 3 * n) * F.tanh(C)
            Hs.append(H)
            Cs.append(C)
            acts.append(gates)
        return F.stack(*Hs, axis=0), F.stack(*Cs, axis=0), F.stack(*acts, axis=0)


class BackwardLoop(mx.gluon.HybridBlock):
    """The reverse recurrence and the weight gradient: `(dY, dH_T, dC_T, W_h, H0, C0, Y, cells,
    gates)` -> `(dG (T, B, 4H), dW_h (4H, H), dH0, dC0)`, `dG` the pre-activations' gradient."""

    def __init__(self, hidden: int, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.steps = hidden, steps

    def hybrid_forward(self, F, dY, dH, dC, W_h, H0, C0, Y, Cs, acts):
        n, T = self.hidden, self.steps
        W_hT = F.transpose(W_h)  # (H, 4H): FullyConnected(dG, W_hT) = dG @ W_h^T
        dYs, cells, gates = unstack(F, dY, T), unstack(F, Cs, T), unstack(F, acts, T)
        dGs = [None] * T
        for t in reversed(range(T)):
            g = gates[t]
            I, Fg, O, C_tilde = (cols(F, g, k * n, (k + 1) * n) for k in range(4))
            C_prev = cells[t - 1] if t > 0 else C0
            tanh_C = F.tanh(cells[t])
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
