"""The "why is the built-in faster" ladder in JAX: d2l's scratch LSTM language model, made faster
one change at a time up to Flax's built-in (common/rungs.py describes the rungs).

Every rung holds the same canonical parameters (the middle rungs in the fused layout,
common.rungs.fuse_lstm; the built-in under Flax's names, convert.py) and trains them with the
same head and step: one-hot inputs, `Y W_hq + b_q`, mean cross-entropy, gradients, d2l's
clipping, SGD. Only the recurrent layer differs. The first three rungs run op by op (JAX's
eager mode, the counterpart of torch's and Gluon's imperative loops: d2l's own JAX code jits
an unrolled Python loop instead, which took seconds to compile); the others jit the whole
step around a `lax.scan` (`compiled`: backward by autodiff; `hand_vjp`: recurrence.scan_split,
the recurrence of the `fast` layer; `fast`: that layer stack itself, layers.fast_forward) or
Flax's `nn.RNN` (`builtin`).
"""
from __future__ import annotations

import functools
import re
from typing import Callable

import jax
import jax.numpy as jnp

from common.config import LMConfig
from common.errors import NotSupported
from common.params import Params, sub_params
from common.rungs import CANONICAL_RUNGS, canonical_grads, check_config, fuse_lstm, gate_width

from .arrays import to_numpy
from .cells import SPLITS, lstm_pointwise, lstm_step
from .devices import compute_scope, device_names, resolve_device
from .layers import (builtin_code_path, builtin_forward, fast_code_path, fast_forward,
                     run_direction)
from .lm import HEAD_KEYS, cross_entropy
from .model import Model, build_model
from .recurrence import scan_split
from .trainer import Trainer, make_optimizer, train_step

RUNGS = ("d2l", "fused", "hoisted", "compiled", "hand_vjp", "fast", "builtin")
EAGER = ("d2l", "fused", "hoisted")
# HLO instructions that launch no kernel.
NOT_KERNELS = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all"}


def d2l_layer(p, X, state):
    """d2l's loop over the scratch cell (one matmul per gate and side), step by step."""
    p, outputs = sub_params(p, "l0."), []
    for x in X:
        state = lstm_step(p, x, state)
        outputs.append(state[0])
    return jnp.stack(outputs), state


def fused_layer(p, X, state):
    outputs = []
    for x in X:
        state = lstm_pointwise({}, x @ p["W_x"] + p["b"], state[0] @ p["W_h"], state)
        outputs.append(state[0])
    return jnp.stack(outputs), state


def hoisted_layer(p, X, state):
    XP, outputs = X @ p["W_x"] + p["b"], []  # every step's input side at once
    # one split (its transpose one concatenate), not T indexings (T full-size cotangents)
    for xp in jnp.split(XP, XP.shape[0]):
        state = lstm_pointwise({}, xp[0], state[0] @ p["W_h"], state)
        outputs.append(state[0])
    return jnp.stack(outputs), state


def _scan_step(p, xp, state):
    return lstm_pointwise({}, xp, state[0] @ p["W_h"], state)


def compiled_layer(p, X, state):
    """The hoisted loop as a `lax.scan`, differentiated by JAX."""
    return run_direction(_scan_step, p, X @ p["W_x"] + p["b"], state)


def hand_vjp_layer(p, X, state):
    """The hoisted loop with the hand-written backward (the `fast` layer's recurrence)."""
    return scan_split(SPLITS["lstm"], False, p["W_h"], {}, X @ p["W_x"] + p["b"], state)


def fast_layer(spec, p, X, state):
    """The suite's `fast` layer stack on the canonical parameters."""
    Y, [final] = fast_forward(spec, p, X, [state])
    return Y, final


def builtin_layer(spec, p, X, state):
    native = {k: v for k, v in p.items() if k not in HEAD_KEYS}
    Y, [final] = builtin_forward(spec, native, X, [state])
    return Y, final


LAYERS = {"d2l": d2l_layer, "fused": fused_layer, "hoisted": hoisted_layer,
          "compiled": compiled_layer, "hand_vjp": hand_vjp_layer}
# Rungs whose layer also takes the layer spec.
SPEC_LAYERS = {"fast": fast_layer, "builtin": builtin_layer}
CODE_PATHS = {"d2l": "Python loop, JAX ops dispatched one by one, 8 matmuls per step",
              "fused": "Python loop, JAX ops dispatched one by one, 2 matmuls per step",
              "hoisted": "input matmul hoisted, Python loop, op by op, 1 matmul per step",
              "compiled": "input hoisted, lax.scan, autodiff backward, step jitted",
              "hand_vjp": "input hoisted, lax.scan, hand-written backward (custom_vjp), "
                          "step jitted"}


def loss(rung: str, cfg: LMConfig, params, ids, targets):
    """`(mean cross-entropy, the same, logits (B, T, V))` from the zero state, traced;
    `ids, targets: (B, T)`."""
    X = jax.nn.one_hot(ids.T, cfg.vocab_size, dtype=params["W_hq"].dtype)  # d2l: (T, B, V)
    zeros = jnp.zeros((X.shape[1], cfg.hidden_size), X.dtype)
    if rung in SPEC_LAYERS:
        layer = functools.partial(SPEC_LAYERS[rung], cfg.layer_spec)
    else:
        layer = LAYERS[rung]
    Y, _ = layer(params, X, (zeros, zeros))
    logits = jnp.swapaxes(Y @ params["W_hq"] + params["b_q"], 0, 1)
    value = cross_entropy(logits, targets)
    return value, value, logits


def _trained(rung: str, cfg: LMConfig, params, ids, targets):
    """`loss` as the trainer takes it: the logits are not returned from the step."""
    value, total, _ = loss(rung, cfg, params, ids, targets)
    return value, total, None


# Each rung's loss for trainer.train_step, made once: a static argument, so that every step of
# a rung runs one executable.
LOSSES = {rung: functools.partial(_trained, rung) for rung in RUNGS}


def grads_fn(rung, cfg, params, ids, targets):
    """`(loss, logits, gradients by the names of params)`."""
    def differentiated(p):
        _, value, logits = loss(rung, cfg, p, ids, targets)
        return value, logits

    (value, logits), grads = jax.value_and_grad(differentiated, has_aux=True)(params)
    return value, logits, grads


grads_jit = jax.jit(grads_fn, static_argnums=(0, 1))


def build(rung: str, cfg: LMConfig, params: Params, dtype: str = "float32",
          device: str = "cpu", steps: int = 35) -> Model:
    """Rung `rung` (the model's `impl`) holding canonical LM `params` (NumPy) exactly; `steps`
    (T) is not needed here (MXNet's compiled rung is unrolled for it)."""
    check_config(cfg)
    if rung not in RUNGS:
        raise NotSupported(f"jax has no rung {rung!r}; it has {', '.join(RUNGS)}")
    dev = resolve_device(device)
    to_canonical = lambda named, convert: canonical_grads(rung, cfg, named, convert)
    if rung == "builtin":
        layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
        head = {k: v for k, v in params.items() if k in HEAD_KEYS}
        return build_model(cfg, rung, head, dtype, dev,
                           builtin_code_path(cfg.layer_spec, dev.platform) + ", step jitted",
                           {"": (cfg.layer_spec, layer)}, to_canonical)
    return build_model(cfg, rung, params if rung in CANONICAL_RUNGS else fuse_lstm(params),
                       dtype, dev, CODE_PATHS.get(rung) or fast_code_path(dev.platform,
                                                                           cfg.layer_spec),
                       to_canonical=to_canonical)


def loss_and_grads(model: Model, ids, targets):
    """`(loss, logits (B, T, V), canonical gradients)` as NumPy, for the parity checks; eager
    rungs run eagerly, the others jitted, as they train."""
    fn = grads_fn if model.impl in EAGER else grads_jit
    with model.scope():
        value, logits, grads = fn(model.impl, model.cfg, model.params, model.ids_in(ids),
                                  model.ids_in(targets))
        return float(value), to_numpy(logits), model.canonical(to_numpy(grads), grads=True)


def make_step(model: Model, ids, targets, lr: float, clip: float) -> Callable[[], object]:
    """d2l's training step on one batch (trainer.Trainer: loss, gradients, clipping, SGD),
    op by op for the eager rungs, else jitted -> a function of no arguments that updates
    `model.params` and returns `(loss, params)`, unsynchronised."""
    trainer = Trainer(model, LOSSES[model.impl], make_optimizer(model, "sgd", lr), clip,
                      jit=model.impl not in EAGER)
    with model.scope():
        ids, targets = model.ids_in(ids), model.ids_in(targets)

    def step():
        loss_, _ = trainer.step_async(ids, targets)
        return loss_, model.params
    step.trainer, step.batch = trainer, (ids, targets)  # for count_ops
    return step


def products_step(cfg: LMConfig, batch: int, steps: int, dtype: str = "float32",
                  device: str = "cpu"):
    """The floor under every scratch rung (common.rungs.PRODUCTS) -> `(step, sync, kernels)`:
    one training step's products alone, jitted, the recurrent ones in a `lax.scan` each way as
    the hand-backward rung runs them (each step's product feeds the next, so none is skipped)."""
    H, V, B, T = cfg.hidden_size, cfg.vocab_size, batch, steps
    Hg = gate_width(cfg.cell, H)      # the fused gates: 4H (LSTM), 3H (GRU), H (RNN)
    dev = resolve_device(device)
    with compute_scope(dev, dtype):
        keys = iter(jax.random.split(jax.random.key(0), 12))
        r = lambda *shape: jax.random.normal(next(keys), shape, dtype)
        args = (r(H, Hg), r(V, Hg), r(H, V), r(T * B, V), r(T * B, H), r(T, B, Hg),
                r(T * B, V), r(B, H))

    def products(W_h, W_x, W_q, X, Y, G, dlogits, h0):
        forward = lambda h, _: ((h @ W_h)[:, :H], None)
        h, _ = jax.lax.scan(forward, h0, None, length=T)
        W_hT = jax.lax.optimization_barrier(W_h.T)
        dh, _ = jax.lax.scan(lambda dh, g: (dh + g @ W_hT, None), h0, G)
        G2 = G.reshape(T * B, Hg)
        return h, dh, Y.T @ G2, X @ W_x, X.T @ G2, Y @ W_q, dlogits @ W_q.T, Y.T @ dlogits

    fn = jax.jit(products)

    def step():
        with compute_scope(dev, dtype):
            return fn(*args)
    return step, jax.block_until_ready, "XLA dots (jitted, recurrent ones in lax.scan)"


def sync(model: Model) -> Callable[[object], object]:
    """The barrier a timed step ends with: JAX dispatches asynchronously on every device."""
    return jax.block_until_ready


def count_ops(model: Model, step: Callable[[], object]):
    """Kernels one training step runs -> `(count, how it was counted)`. Eager rungs: the
    primitives of the step's jaxpr, each dispatched on its own (a nested jit as one call).
    Jitted rungs: the compiled HLO's kernels (fusions, dots, copies...), loop bodies times
    their trip count."""
    with model.scope():
        args = step.trainer.step_args(*step.batch)
        if model.impl in EAGER:
            closed = jax.make_jaxpr(step.trainer.step_fn, static_argnums=(0, 1, 2))(*args)
            return jaxpr_ops(closed.jaxpr), "jaxpr primitives dispatched eagerly"
        text = train_step.lower(*args).compile().as_text()
    return hlo_kernels(text, step.batch[0].shape[1]), "XLA HLO kernels (loops x trips)"


def jaxpr_ops(jaxpr) -> int:
    """Primitives a jaxpr runs when executed op by op: scan bodies times their length, a
    nested jit as one call, custom-derivative wrappers by their body."""
    total = 0
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "scan":
            total += params["length"] * jaxpr_ops(params["jaxpr"].jaxpr)
        elif name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
            inner = params.get("call_jaxpr") or params.get("fun_jaxpr")
            total += jaxpr_ops(getattr(inner, "jaxpr", inner))
        else:
            total += 1
    return total


def hlo_kernels(text: str, steps: int) -> int:
    """Kernels in an optimized HLO module's text: the entry computation's instructions that
    launch one, a `while` counted as its body times its trip count (XLA's `known_trip_count`,
    else `steps`)."""
    computations, current = {}, None
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{\s*$", line)
        if header:
            current = computations.setdefault(header.group(1), [])
            if line.startswith("ENTRY"):
                computations["__entry__"] = current
        elif current is not None and " = " in line and line.startswith("  "):
            current.append(line)
    return _kernels(computations, "__entry__", steps)


def _kernels(computations, name: str, steps: int) -> int:
    total = 0
    for line in computations[name]:
        rhs = line.split(" = ", 1)[1]
        opcode = re.search(r"(?:^|\s)([a-z][a-z0-9\-]*)\(", rhs).group(1)
        if opcode == "while":
            body = re.search(r"body=%([\w.\-]+)", rhs).group(1)
            trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', rhs)
            total += (int(trips.group(1)) if trips else steps) * _kernels(computations, body, steps)
        elif opcode not in NOT_KERNELS:
            total += 1
    return total


def runtime_info(device: str = "cpu") -> dict:
    """Versions, device and threads as this process sees them, for the records."""
    import flax
    import jaxlib
    dev = resolve_device(device)
    return {"versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                         "flax": flax.__version__},
            "device": f"{dev.platform}:{dev.id} ({dev.device_kind})",
            "threads": _xla_threads(), "devices": device_names()}


def _xla_threads():
    """XLA's CPU thread pool follows the CPUs the process may run on (set_threads pins them)."""
    from common.cpus import cpu_count
    return cpu_count()


def set_threads(threads: int) -> None:
    """XLA has no thread setting of its own: the caller pins the process to `threads` CPUs."""
