"""The JAX backend: `common.backend.Backend`'s hooks over `layers.py`, and for language models
over `lm.py` and `train.py` (a model handle is an `lm.JaxLM`).

NumPy in, NumPy out, in the layer's dtype. A layer handle holds the parameters as device arrays:
canonical names for scratch and fast, Flax's flat native names (convert.py) for builtin, so that the
built-in's gradients are taken with respect to its own parameters. No state is kept in it.

Every call runs inside `devices.compute_scope` (x64 only for float64, "highest" matmul
precision on a GPU) and creates its arrays there. `forward` and `vjp` are jitted once at module
level with `spec` and `impl` static, so JAX's jit cache holds one executable per (spec, impl,
dtype, shapes, device). Copying the results to NumPy blocks until they are computed; a timing
harness calling the jitted functions directly must call `block_until_ready()` itself.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List, Optional

import jax
import numpy as np

from common.backend import Backend, VJPResult
from common.config import LayerSpec
from common.params import Params

from . import lm, runtime, train
from .arrays import from_numpy, states_in, states_out, to_numpy
from .convert import from_native, grads_from_native
from .devices import compute_scope, resolve_device
from .layers import (builtin_code_path, builtin_forward, builtin_name, code_path_of, forward_of,
                     make_builtin)

def run_layer(spec: LayerSpec, impl: str, params, X, states):
    """`X: (T, B, I)` -> `(Y, finals)` through a scratch stack of `impl` or Flax's layers."""
    if impl == "builtin":
        return builtin_forward(spec, params, X, states)
    return forward_of(impl)(spec, params, X, states)


@functools.partial(jax.jit, static_argnums=(0, 1))
def forward_jit(spec: LayerSpec, impl: str, params, X, states):
    """Jitted `run_layer`."""
    return run_layer(spec, impl, params, X, states)


@functools.partial(jax.jit, static_argnums=(0, 1))
def vjp_jit(spec: LayerSpec, impl: str, params, X, states, G, G_states):
    """`(Y, finals, (dparams, dX, dstates))`: the VJP of `run_layer` fed `(G, G_states)`."""
    (Y, finals), pullback = jax.vjp(functools.partial(run_layer, spec, impl), params, X, states)
    return Y, finals, pullback((G, G_states))


@dataclass
class JaxLayer:
    """What `build_layer` returns: `params` are device arrays (canonical or native names)."""

    spec: LayerSpec
    impl: str
    dtype: str
    device: jax.Device
    params: Optional[Dict[str, jax.Array]] = None
    code_path: str = ""  # the code that runs, for every record made with this layer

    def scope(self):
        return compute_scope(self.device, self.dtype)

    def array(self, array) -> jax.Array:
        """A NumPy array on the layer's device in its dtype; call inside `scope()`."""
        return from_numpy(array, self.dtype, self.device)

    def states_in(self, state, batch: int) -> List:
        """A contract-layout NumPy state (None = zeros) as device arrays, LSTM pairs as tuples."""
        return states_in(self.spec, state, self.dtype, self.device, batch)


class JaxBackend(Backend):
    """JAX: d2l's cells or the fast scratch under `lax.scan`, or Flax linen's `nn.RNN` over its
    built-in cells."""

    name = "jax"
    builtin_gru = builtin_name("gru")

    def info(self) -> dict:
        return runtime.info()

    def _build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str,
                     device: str) -> JaxLayer:
        dev = resolve_device(device)
        layer = JaxLayer(spec, impl, dtype, dev)
        with layer.scope():
            if impl == "builtin":
                layer.params = make_builtin(spec, params, dtype, dev)
                layer.code_path = builtin_code_path(spec, dev.platform)
            else:
                layer.params = {k: layer.array(v) for k, v in params.items()}
                layer.code_path = code_path_of(impl, dev.platform, spec)
        return layer

    def get_params(self, layer: JaxLayer) -> Params:
        arrays = to_numpy(layer.params)
        return arrays if layer.impl != "builtin" else from_native(layer.spec, arrays)

    def forward(self, layer: JaxLayer, X: np.ndarray, state: Optional[list] = None):
        with layer.scope():
            states = layer.states_in(state, X.shape[1])
            Y, finals = forward_jit(layer.spec, layer.impl, layer.params, layer.array(X), states)
            return to_numpy(Y), states_out(finals)

    def vjp(self, layer: JaxLayer, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        with layer.scope():
            # None states become zeros here, so one executable serves both cases.
            args = (layer.array(X), layer.states_in(state, X.shape[1]), layer.array(G),
                    layer.states_in(G_state, X.shape[1]))
            Y, finals, (grads, dX, dstates) = vjp_jit(layer.spec, layer.impl, layer.params, *args)
            grads = to_numpy(grads)
            if layer.impl == "builtin":
                grads = grads_from_native(layer.spec, grads)
            dstate = None if state is None else states_out(dstates)
            return VJPResult(to_numpy(Y), states_out(finals), grads, to_numpy(dX), dstate)

    # Language models.

    def _build_lm(self, cfg, params: Params, dtype: str, device: str) -> lm.JaxLM:
        return lm.build_lm(cfg, params, dtype, resolve_device(device))

    def lm_forward(self, model: lm.JaxLM, ids: np.ndarray, state: Optional[list] = None):
        with model.scope():
            logits, finals = model.forward(model.ids_in(ids), state)
            return to_numpy(logits), states_out(finals)

    def lm_loss_grads(self, model: lm.JaxLM, ids: np.ndarray, targets: np.ndarray,
                      state: Optional[list] = None):
        with model.scope():
            ids, targets = model.ids_in(ids), model.ids_in(targets)
            loss, grads, finals = lm.loss_and_grads(model.cfg, model.params, ids, targets,
                                                    model.states_in(state, ids.shape[0]))
            return float(loss), model.canonical(to_numpy(grads), grads=True), states_out(finals)

    def make_trainer(self, model: lm.JaxLM, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0) -> train.Trainer:
        return train.make_trainer(model, optimizer, lr, clip)


BACKEND = JaxBackend()
