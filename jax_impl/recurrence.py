"""The scan of a split cell with a hand-written backward (`jax.custom_vjp`): the scratch fast path.

A split cell computes one step as `state' = pointwise(q, xp_t, H @ W_h, state)`, where
`xp_t = X_t W_x + b` (every gate's input side, hoisted out of the loop as one large matmul by
the caller) and `q` holds any further parameters of the pointwise part (GRU's `b_hn`).

Why not autodiff: differentiating `lax.scan` makes XLA accumulate `dW_h += H_{t-1}^T dhh_t`
inside the reverse loop, one small matmul and a full `(H, G*H)` read-modify-write per step;
the backward took about 8x the forward (docs/performance.md). Here the forward stores each step's
state and recurrent projection `hh_t`; the reverse loop carries only the state gradient
(`jax.vjp` of the pointwise part, then `dhh_t @ W_h^T`), and the weight gradient is formed
once after it, `dW_h = sum_t H_{t-1}^T dhh_t`, as one `(H, T*B) x (T*B, G*H)` matmul. The math
is autodiff's; only the order of summation differs. Differentiable once (no `jvp` through it).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from common.backend import hidden_of


class Split(NamedTuple):
    """A cell's pointwise part `(q, xp, hh, state) -> state`; `additive`: it reads only
    `xp + hh`, so both have the same gradient and the backward stores it once."""

    pointwise: Callable
    additive: bool


def _with_hidden(state, H):
    """`state` with its hidden part replaced by `H`."""
    return (H,) + tuple(state[1:]) if isinstance(state, tuple) else H


def _previous(states, state0, reverse: bool):
    """Per step t, the state it started from: `(T, ...)` stacks, in time order."""
    def shift(stack, first):
        first = first[None]
        if reverse:  # step t follows step t+1; the last step starts from state0
            return jnp.concatenate([stack[1:], first])
        return jnp.concatenate([first, stack[:-1]])
    return jax.tree.map(shift, states, state0)


def _forward(split: Split, reverse: bool, W_h, q, XP, state0):
    def body(state, xp):
        hh = hidden_of(state) @ W_h
        new = split.pointwise(q, xp, hh, state)
        return new, (new, hh)

    final, (states, HH) = lax.scan(body, state0, XP, reverse=reverse)
    return final, states, HH


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def scan_split(split: Split, reverse: bool, W_h, q, XP, state0):
    """`XP: (T, B, G*H)`, `W_h: (H, G*H)`, `state0` -> `(Y: (T, B, H), final state)`.

    `reverse=True` walks t = T-1 .. 0 and keeps Y in time order (as `layers.run_direction`).
    """
    final, states, _ = _forward(split, reverse, W_h, q, XP, state0)
    return hidden_of(states), final


def _scan_fwd(split, reverse, W_h, q, XP, state0):
    final, states, HH = _forward(split, reverse, W_h, q, XP, state0)
    return (hidden_of(states), final), (W_h, q, XP, HH, state0, states)


def _scan_bwd(split, reverse, residuals, cotangents):
    W_h, q, XP, HH, state0, states = residuals
    dY, dfinal = cotangents
    prev = _previous(states, state0, reverse)
    # Transposed once, outside the loop: XLA on CPU otherwise transposes W_h in every step
    # (measured 5x slower), and would fold a plain `W_h.T` back into the loop's dot.
    W_hT = lax.optimization_barrier(W_h.T)

    def body(carry, step):
        dstate, dq = carry
        xp, hh, sprev, dy = step
        dstate = _with_hidden(dstate, hidden_of(dstate) + dy)
        _, pullback = jax.vjp(split.pointwise, q, xp, hh, sprev)
        dq_t, dxp, dhh, dprev = pullback(dstate)
        dprev = _with_hidden(dprev, hidden_of(dprev) + dhh @ W_hT)
        out = dhh if split.additive else (dxp, dhh)
        return (dprev, jax.tree.map(jnp.add, dq, dq_t)), out

    carry0 = (dfinal, jax.tree.map(jnp.zeros_like, q))
    (dstate0, dq), out = lax.scan(body, carry0, (XP, HH, prev, dY), reverse=not reverse)
    dXP, dHH = (out, out) if split.additive else out
    H_prev = hidden_of(prev)
    # The weight gradient of every step at once: (H, T*B) @ (T*B, G*H).
    dW_h = H_prev.reshape(-1, H_prev.shape[-1]).T @ dHH.reshape(-1, dHH.shape[-1])
    return dW_h, dq, dXP, dstate0


scan_split.defvjp(_scan_fwd, _scan_bwd)
