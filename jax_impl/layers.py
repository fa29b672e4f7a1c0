"""Recurrent layers in JAX: the two scratch stacks (`lax.scan` over time) and Flax's built-ins.

`scratch_forward` is d2l's algorithm: the cell of cells.py applied step by step under
`lax.scan`, gradients by autodiff. `fast_forward` is the fast scratch stack, built by the same
recipe in every framework: the gates fused, the input projection of every step hoisted into one
matmul, then recurrence.scan_split, a `lax.scan` with a hand-written backward, for the cells
that split (RNN, LSTM, reset_after GRU; cells.split_of). The reset_before GRU has no split form
(its recurrent product is `(R * H) @ W_hh`), so its fast stack hoists and fuses the same way but
scans the step under autodiff; its code path says so.

All are pure functions of (parameters, X, states), differentiable with `jax.vjp`/`jax.grad`
and not jitted here, so that a bigger model's jitted forward can call them. Shapes:
`X: (T, B, I)` -> `Y: (T, B, H*D)`; states follow the contract's layout (a list over l0, l0_rev,
l1, ... of `(B, H)` arrays, LSTM pairs `(H, C)`); `None` states mean zeros.

Built-in: `nn.RNN(cell, time_major=True, return_carry=True)` per layer, wrapped in
`nn.Bidirectional` for two directions, stacked in `BuiltinStack`. Cells: `nn.SimpleCell`
(tanh, `residual=False`), `nn.OptimizedLSTMCell` (the same parameter tree as `nn.LSTMCell`, its
four gate matmuls per side fused into one) and `nn.GRUCell` (reset_after only).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax import lax

from common.config import LayerSpec
from common.backend import hidden_of, refuse_reset_before
from common.params import Params, prefixes, sub_params

from .arrays import from_numpy
from .cells import SPLIT_GATES, reset_before_fused_step, split_of, step_fn
from .convert import to_native
from .recurrence import scan_split

BUILTINS = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


def zero_states(spec: LayerSpec, batch: int, dtype, device) -> List:
    """All-zero states of `batch` rows, in the contract's layout (`device` None: the
    computation's own, as inside a jitted function)."""
    zeros = lambda: jnp.zeros((batch, spec.hidden_size), dtype, device=device)
    return [(zeros(), zeros()) if spec.cell == "lstm" else zeros() for _ in prefixes(spec)]


def run_direction(step, p, X, state, reverse=False):
    """The time loop of one direction: `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    def body(carry, x):
        carry = step(p, x, carry)
        return carry, hidden_of(carry)

    # reverse=True walks t = T-1 .. 0 but stores Y[t] at t, so Y stays in time order and the
    # final state is the one after t = 0.
    final, Y = lax.scan(body, state, X, reverse=reverse)
    return Y, final


def fused_weights(cell: str, p):
    """One direction's canonical `p` -> `(W_x (I, G*H), W_h (H, G*H), b (G*H), q)` with the
    gates side by side in SPLIT_GATES order; `q`: GRU's `{"b_hn"}`, else empty."""
    gates = SPLIT_GATES[cell]
    join = lambda fmt: jnp.concatenate([p[fmt.format(g)] for g in gates], axis=-1)
    q = {"b_hn": p["b_hn"]} if cell == "gru" else {}
    return join("W_x{}"), join("W_h{}"), join("b_{}"), q


def run_direction_split(cell: str, split, p, X, state, reverse=False):
    """`run_direction` for a split cell: `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    W_x, W_h, b, q = fused_weights(cell, p)
    XP = X @ W_x + b  # every step's input side at once: (T, B, G*H)
    return scan_split(split, reverse, W_h, q, XP, state)


def run_direction_hoisted(cell: str, p, X, state, reverse=False):
    """`run_direction` over the fused, hoisted reset_before GRU step, under autodiff."""
    W_x, W_h, b, q = fused_weights(cell, p)
    fused = {"W_h": W_h, **q}
    return run_direction(reset_before_fused_step, fused, X @ W_x + b, state, reverse)


def stack_forward(spec: LayerSpec, run, params, X, states=None):
    """The stack of `run(p, X, state, reverse) -> (Y, final)` per (layer, direction):
    `X: (T, B, I)` -> `(Y: (T, B, H*D), finals)`; None states = zeros.

    `params`: canonical names (with prefixes) -> arrays.
    """
    states = zero_states(spec, X.shape[1], X.dtype, None) if states is None else states
    pre, D = prefixes(spec), spec.num_directions
    finals, inputs = [], X
    for layer in range(spec.num_layers):
        outputs = []
        for d in range(D):
            idx = layer * D + d
            Y, final = run(sub_params(params, pre[idx]), inputs, states[idx], reverse=d == 1)
            outputs.append(Y)
            finals.append(final)
        inputs = jnp.concatenate(outputs, axis=-1)  # forward direction's features first
    return inputs, finals


def scratch_forward(spec: LayerSpec, params, X, states=None):
    """d2l's stack: the cell step by step under `lax.scan`, backward by autodiff."""
    run = functools.partial(run_direction, step_fn(spec.cell, spec.gru_variant, spec.activation))
    return stack_forward(spec, run, params, X, states)


def run_direction_fast(spec: LayerSpec, p, X, state, reverse=False):
    """One direction of the fast stack: `X: (T, B, I)` -> `(Y: (T, B, H), final state)`."""
    split = split_of(spec.cell, spec.gru_variant, spec.activation)
    if split is None:
        return run_direction_hoisted(spec.cell, p, X, state, reverse)
    return run_direction_split(spec.cell, split, p, X, state, reverse)


def fast_forward(spec: LayerSpec, params, X, states=None):
    """The fast stack: gates fused, input projection hoisted, hand-written backward."""
    return stack_forward(spec, functools.partial(run_direction_fast, spec), params, X, states)


FORWARDS = {"scratch": scratch_forward, "fast": fast_forward}


def forward_of(impl: str):
    """The stack over canonical parameters of `impl` ("scratch" or "fast")."""
    return FORWARDS[impl]


def builtin_name(cell: str) -> str:
    return f"flax.linen.{BUILTINS[cell].__name__}"


def scratch_code_path(platform: str) -> str:
    """d2l's algorithm: its cells under `lax.scan`, autodiff backward."""
    return f"scratch cells under lax.scan (autodiff backward), jitted, XLA {platform}"


def fast_code_path(platform: str, spec: LayerSpec) -> str:
    """The fast stack; whether its cell takes the hand-written backward."""
    head = "fast scratch: gates fused, input projection hoisted, lax.scan"
    if split_of(spec.cell, spec.gru_variant) is not None:
        return f"{head}, hand-written backward (custom_vjp), jitted, XLA {platform}"
    return f"{head}, autodiff backward (reset_before has no split form), jitted, XLA {platform}"


def code_path_of(impl: str, platform: str, spec: LayerSpec) -> str:
    """The code a canonical stack of `impl` runs (for records)."""
    return fast_code_path(platform, spec) if impl == "fast" else scratch_code_path(platform)


def builtin_code_path(spec: LayerSpec, platform: str) -> str:
    """Which code the built-in runs: Flax's cell inside `nn.RNN`'s `lax.scan`, compiled by XLA."""
    driver = "nn.Bidirectional(nn.RNN)" if spec.bidirectional else "nn.RNN"
    return f"{builtin_name(spec.cell)} in {driver} (lax.scan), jitted, XLA {platform}"


class BuiltinStack(nn.Module):
    """Flax's own recurrent layers stacked `spec.num_layers` deep; submodules `layer_{k}`.

    `__call__(X, carries)`: `X: (T, B, I)`, `carries` one Flax carry per (layer, direction) in
    the contract's order (LSTM carries are Flax's `(c, h)`) -> `(Y: (T, B, H*D), carries)`.
    """

    spec: LayerSpec
    dtype: Any = jnp.float32

    # parent=None: a module made inside a compact method would bind to this one under an
    # automatic name (`SimpleCell_0`, `RNN_0`); unbound, it takes the attribute name its owner
    # gives it (`cell`, `forward_rnn`, `backward_rnn`): the tree convert.py names.
    def _cell(self):
        extra = {}
        if self.spec.cell == "rnn":  # SimpleCell's default is tanh
            extra["activation_fn"] = {"tanh": jnp.tanh, "relu": nn.relu}[self.spec.activation]
        return BUILTINS[self.spec.cell](features=self.spec.hidden_size, dtype=self.dtype,
                                        param_dtype=self.dtype, parent=None, **extra)

    def _layer(self, k: int):
        name = f"layer_{k}"
        if not self.spec.bidirectional:
            return nn.RNN(self._cell(), time_major=True, return_carry=True, name=name)
        rnn = lambda: nn.RNN(self._cell(), time_major=True, return_carry=True, parent=None)
        # Bidirectional concatenates forward features first and runs backward_rnn with
        # reverse=True, keep_order=True: outputs in time order, final carry after t = 0.
        return nn.Bidirectional(rnn(), rnn(), time_major=True, return_carry=True, name=name)

    @nn.compact
    def __call__(self, X, carries):
        D, finals = self.spec.num_directions, []
        for k in range(self.spec.num_layers):
            mine = carries[k * D:(k + 1) * D]
            carry, X = self._layer(k)(X, initial_carry=tuple(mine) if D == 2 else mine[0])
            finals.extend(carry if D == 2 else [carry])
        return X, finals


def make_builtin(spec: LayerSpec, params: Params, dtype, device) -> Dict[str, jax.Array]:
    """Flax's layers' parameters for canonical `params` (NumPy) exactly: the flat native dict
    (convert.py's names) that `builtin_forward` applies the module to, as arrays in `dtype` on
    `device` (None: the scope's); call inside `arrays.scope`. A Flax module holds no
    parameters, so these are the built-in."""
    refuse_reset_before(spec, builtin_name("gru"))
    return {k: from_numpy(v, dtype, device) for k, v in to_native(spec, params).items()}


def builtin_module(spec: LayerSpec, dtype=jnp.float32) -> BuiltinStack:
    """The Flax module computing `spec` (parameters are passed to `apply`, not held)."""
    return BuiltinStack(spec, dtype)


def _to_flax_carry(spec: LayerSpec, state):
    """Contract `(H, C)` -> Flax LSTM carry `(c, h)`; other cells unchanged."""
    return (state[1], state[0]) if spec.cell == "lstm" else state


def builtin_forward(spec: LayerSpec, native, X, states=None):
    """Run Flax's layers on `X: (T, B, I)` with flat `native` params (convert.py's names)."""
    states = zero_states(spec, X.shape[1], X.dtype, None) if states is None else states
    module = builtin_module(spec, X.dtype)
    variables = {"params": traverse_util.unflatten_dict(dict(native), sep="/")}
    Y, carries = module.apply(variables, X, [_to_flax_carry(spec, s) for s in states])
    return Y, [_to_flax_carry(spec, c) for c in carries]  # the swap is its own inverse
