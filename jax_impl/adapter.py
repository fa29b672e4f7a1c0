"""The JAX backend: `common.backend.Backend`'s hooks over `layers.py`, and for language models
over `lm.py` and `trainer.py`.

NumPy in, NumPy out, in the layer's dtype. Layers and language models are `model.Model`s (a
layer's `cfg` is its LayerSpec): the parameters as device arrays, canonical names for scratch
and fast, Flax's flat native names (convert.py) for builtin, so that the built-in's gradients
are taken with respect to its own parameters. No state is kept in them.

Every call runs inside `devices.compute_scope` (x64 only for float64, "highest" matmul
precision on a GPU) and creates its arrays there. `forward` and `vjp` are jitted once at module
level with `spec` and `impl` static, so JAX's jit cache holds one executable per (spec, impl,
dtype, shapes, device). Copying the results to NumPy blocks until they are computed; a timing
harness calling the jitted functions directly must call `block_until_ready()` itself.
"""
from __future__ import annotations

import functools
from typing import List, Optional

import jax
import numpy as np

from common.backend import Backend, VJPResult
from common.config import LayerSpec
from common.params import Params

from . import lm, runtime
from .arrays import states_in, states_out, to_numpy
from .devices import resolve_device
from .layers import builtin_code_path, builtin_forward, builtin_name, code_path_of, forward_of
from .model import Model, build_model
from .trainer import Trainer


def _run(spec: LayerSpec, impl: str, params, X, states):
    """`X: (T, B, I)` -> `(Y, finals)` through a scratch stack of `impl` or Flax's layers."""
    if impl == "builtin":
        return builtin_forward(spec, params, X, states)
    return forward_of(impl)(spec, params, X, states)


@functools.partial(jax.jit, static_argnums=(0, 1))
def forward_jit(spec: LayerSpec, impl: str, params, X, states):
    """Jitted `_run`."""
    return _run(spec, impl, params, X, states)


@functools.partial(jax.jit, static_argnums=(0, 1))
def vjp_jit(spec: LayerSpec, impl: str, params, X, states, G, G_states):
    """`(Y, finals, (dparams, dX, dstates))`: the VJP of `_run` fed `(G, G_states)`."""
    (Y, finals), pullback = jax.vjp(functools.partial(_run, spec, impl), params, X, states)
    return Y, finals, pullback((G, G_states))


def run_layer(layer: Model, X, states):
    """`X: (T, B, I)` array -> `(Y, finals)` arrays, through the layer's code path, jitted;
    call inside `layer.scope()`."""
    return forward_jit(layer.cfg, layer.impl, layer.params, X, states)


def _states_in(layer: Model, state, batch: int) -> List:
    """A contract-layout NumPy state (None = zeros) as device arrays, LSTM pairs as tuples."""
    return states_in(layer.cfg, state, layer.dtype, layer.device, batch)


class JaxBackend(Backend):
    """JAX: d2l's cells or the fast scratch under `lax.scan`, or Flax linen's `nn.RNN` over its
    built-in cells."""

    name = "jax"
    builtin_gru = builtin_name("gru")

    def info(self) -> dict:
        return runtime.info()

    def _build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str,
                     device: str) -> Model:
        dev = resolve_device(device)  # float64 without x64 is refused in build_model
        if impl == "builtin":
            return build_model(spec, impl, {}, dtype, dev, builtin_code_path(spec, dev.platform),
                               {"": (spec, params)}, lambda named, convert: convert(spec, named))
        return build_model(spec, impl, params, dtype, dev, code_path_of(impl, dev.platform, spec))

    def get_params(self, layer: Model) -> Params:
        return layer.canonical_params()

    def forward(self, layer: Model, X: np.ndarray, state: Optional[list] = None):
        with layer.scope():
            Y, finals = run_layer(layer, layer.array(X), _states_in(layer, state, X.shape[1]))
            return to_numpy(Y), states_out(finals)

    def vjp(self, layer: Model, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        with layer.scope():
            # None states become zeros here, so one executable serves both cases.
            args = (layer.array(X), _states_in(layer, state, X.shape[1]), layer.array(G),
                    _states_in(layer, G_state, X.shape[1]))
            Y, finals, (grads, dX, dstates) = vjp_jit(layer.cfg, layer.impl, layer.params, *args)
            grads = layer.canonical(to_numpy(grads), grads=True)
            dstate = None if state is None else states_out(dstates)
            return VJPResult(to_numpy(Y), states_out(finals), grads, to_numpy(dX), dstate)

    # Language models.

    def _build_lm(self, cfg, params: Params, dtype: str, device: str) -> Model:
        return lm.build_lm(cfg, params, dtype, resolve_device(device))

    def lm_forward(self, model: Model, ids: np.ndarray, state: Optional[list] = None):
        with model.scope():
            logits, finals = lm.forward(model, model.ids_in(ids, model.cfg.vocab_size), state)
            return to_numpy(logits), states_out(finals)

    def lm_loss_grads(self, model: Model, ids: np.ndarray, targets: np.ndarray,
                      state: Optional[list] = None):
        with model.scope():
            V = model.cfg.vocab_size
            ids, targets = model.ids_in(ids, V), model.ids_in(targets, V)
            loss, grads, finals = lm.loss_and_grads(model.cfg, model.params, ids, targets,
                                                    lm.lm_states_in(model, state, ids.shape[0]))
            return float(loss), model.canonical(to_numpy(grads), grads=True), states_out(finals)

    def make_trainer(self, model: Model, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0) -> Trainer:
        return lm.make_trainer(model, optimizer, lr, clip)


BACKEND = JaxBackend()
