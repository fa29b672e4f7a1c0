"""The PyTorch backend: `common.backend.Backend`'s hooks over `layers.py`, and for language
models over `lm.py` and `train.py`.

NumPy in, NumPy out, in the layer's dtype. A layer handle holds either the canonical parameters
as leaf tensors (scratch and fast) or the `nn.RNN/LSTM/GRU` module (builtin); no state is kept in it.
A language-model handle is a `lm.TorchLM`, likewise stateless.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from common.backend import Backend, VJPResult
from common.config import LayerSpec
from common.errors import NotSupported
from common.params import Params

from . import lm, runtime, train
from .arrays import from_numpy, states_in, states_out, to_numpy
from .convert import from_native, grads_from_native
from .devices import TORCH_DTYPES, resolve_device
from .layers import (builtin_code_path, builtin_forward, builtin_name, code_path_of, forward_of,
                     make_builtin)


@dataclass
class TorchLayer:
    """What `build_layer` returns: scratch and fast keep `params` (canonical leaves), builtin
    `module`."""

    spec: LayerSpec
    impl: str
    dtype: str
    device: torch.device
    params: Optional[Dict[str, torch.Tensor]] = None
    module: Optional[nn.Module] = None
    code_path: str = ""  # the kernels that run, for every record made with this layer

    def leaves(self) -> Dict[str, torch.Tensor]:
        """The trainable tensors by name (canonical for scratch and fast, native for builtin)."""
        return self.params if self.impl != "builtin" else dict(self.module.named_parameters())

    def run(self, X, states):
        """`X: (T, B, I)` tensor -> `(Y, finals)` tensors, through the layer's code path."""
        if self.impl == "builtin":
            return builtin_forward(self.spec, self.module, X, states)
        return forward_of(self.impl)(self.spec, self.params, X, states)

    def tensor(self, array, requires_grad=False) -> torch.Tensor:
        """A NumPy array as a fresh tensor in the layer's dtype and device."""
        return from_numpy(array, self.dtype, self.device).requires_grad_(requires_grad)

    def states_in(self, state, requires_grad=False):
        """A contract-layout NumPy state as tensors (None stays None)."""
        states = states_in(self.spec, state, self.dtype, self.device)
        for t in _flat(states):
            t.requires_grad_(requires_grad)
        return states


def _flat(states) -> List[torch.Tensor]:
    """States as a flat list of tensors, LSTM pairs unpacked."""
    out = []
    for s in states or []:
        out.extend(s if isinstance(s, tuple) else [s])
    return out


def _regroup(spec: LayerSpec, flat: List[np.ndarray]) -> List:
    """Inverse of `_flat`: LSTM pairs regrouped."""
    return [tuple(flat[i:i + 2]) for i in range(0, len(flat), 2)] if spec.cell == "lstm" else flat


def _probe(layer: TorchLayer) -> None:
    """One tiny forward and backward, so that a kernel lacking the dtype fails here, quoted."""
    X = torch.zeros((1, 1, layer.spec.input_size), dtype=TORCH_DTYPES[layer.dtype],
                    device=layer.device, requires_grad=True)
    try:
        with torch.enable_grad():
            Y, _ = layer.run(X, None)
            torch.autograd.grad(Y.sum(), [X, *layer.leaves().values()])
    except (RuntimeError, NotImplementedError) as exc:
        path = builtin_name(layer.spec.cell) if layer.impl == "builtin" else layer.code_path
        raise NotSupported(f"{path} cannot run {layer.dtype} on {layer.device}: torch says: "
                           f"{exc}") from exc


class TorchBackend(Backend):
    """PyTorch: d2l's cells in a Python loop, the fast scratch, or `torch.nn.RNN/LSTM/GRU`."""

    name = "torch"
    builtin_gru = builtin_name("gru")

    def info(self) -> dict:
        return runtime.info()

    def _build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str,
                     device: str) -> TorchLayer:
        dev = resolve_device(device)
        layer = TorchLayer(spec, impl, dtype, dev,
                           code_path=code_path_of(impl, spec, TORCH_DTYPES[dtype], dev))
        if impl == "builtin":
            layer.module = make_builtin(spec, params, TORCH_DTYPES[dtype], dev)
            layer.code_path = builtin_code_path(spec, TORCH_DTYPES[dtype], dev)
        else:
            layer.params = {k: layer.tensor(v, requires_grad=True) for k, v in params.items()}
        _probe(layer)
        return layer

    def get_params(self, layer: TorchLayer) -> Params:
        arrays = {k: to_numpy(v) for k, v in layer.leaves().items()}
        return arrays if layer.impl != "builtin" else from_native(layer.spec, arrays)

    def forward(self, layer: TorchLayer, X: np.ndarray, state: Optional[list] = None):
        with torch.no_grad():
            Y, finals = layer.run(layer.tensor(X), layer.states_in(state))
        return to_numpy(Y), states_out(finals)

    def vjp(self, layer: TorchLayer, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        X_t, state_t, leaves = layer.tensor(X, True), layer.states_in(state, True), layer.leaves()
        with torch.enable_grad():
            Y, finals = layer.run(X_t, state_t)
            objective = (Y * layer.tensor(G)).sum()
            for s, g in zip(_flat(finals), _flat(layer.states_in(G_state))):
                objective = objective + (s * g).sum()
        wrt = [*leaves.values(), X_t, *_flat(state_t)]
        # materialize_grads: an input that does not reach the objective gets zeros, not None.
        grads = [to_numpy(g) for g in torch.autograd.grad(objective, wrt, allow_unused=True,
                                                          materialize_grads=True)]
        named = dict(zip(leaves, grads))
        if layer.impl == "builtin":
            named = grads_from_native(layer.spec, named)
        dstate = None if state is None else _regroup(layer.spec, grads[len(leaves) + 1:])
        return VJPResult(to_numpy(Y), states_out(finals), named, grads[len(leaves)], dstate)

    # Language models.

    def _build_lm(self, cfg, params: Params, dtype: str, device: str) -> lm.TorchLM:
        model = lm.build_lm(cfg, params, TORCH_DTYPES[dtype], resolve_device(device))
        _probe_lm(model)
        return model

    def lm_forward(self, model: lm.TorchLM, ids: np.ndarray, state: Optional[list] = None):
        with torch.no_grad():
            logits, finals = model.forward(model.ids_in(ids), model.states_in(state))
        return np.ascontiguousarray(to_numpy(logits)), states_out(finals)

    def lm_loss_grads(self, model: lm.TorchLM, ids: np.ndarray, targets: np.ndarray,
                      state: Optional[list] = None):
        leaves = model.leaves()
        with torch.enable_grad():
            logits, finals = model.forward(model.ids_in(ids), model.states_in(state))
            loss = lm.cross_entropy(logits, model.ids_in(targets))
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True,
                                    materialize_grads=True)
        named = {k: to_numpy(g) for k, g in zip(leaves, grads)}
        return loss.item(), model.canonical(named, grads=True), states_out(finals)

    def make_trainer(self, model: lm.TorchLM, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0) -> train.Trainer:
        return train.make_trainer(model, optimizer, lr, clip)


def _probe_lm(model: lm.TorchLM) -> None:
    """One tiny forward and backward, so that a kernel lacking the dtype fails here, quoted."""
    ids = torch.zeros((1, 1), dtype=torch.long, device=model.device)
    try:
        with torch.enable_grad():
            logits, _ = model.forward(ids)
            torch.autograd.grad(logits.sum(), list(model.leaves().values()), allow_unused=True)
    except (RuntimeError, NotImplementedError) as exc:
        raise NotSupported(f"{model.code_path} cannot run {model.dtype} on {model.device}: "
                           f"torch says: {exc}") from exc


BACKEND = TorchBackend()
