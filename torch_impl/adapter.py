"""The PyTorch backend: `common.backend.Backend`'s hooks over `layers.py`, and for language
models over `lm.py` and `trainer.py`.

NumPy in, NumPy out, in the layer's dtype. Layers and language models are `model.Model`s: the
canonical parameters as leaf tensors (scratch and fast) or the `nn.RNN/LSTM/GRU` module
(builtin); no state is kept in them.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from common.backend import Backend, VJPResult
from common.config import LayerSpec
from common.errors import NotSupported
from common.params import Params

from . import lm, runtime
from .arrays import states_in, states_out, to_numpy
from .devices import TORCH_DTYPES, resolve_device
from .layers import builtin_code_path, builtin_forward, builtin_name, code_path_of, forward_of
from .model import Model, build_model
from .trainer import Trainer


def run_layer(layer: Model, X, states):
    """`X: (T, B, I)` tensor -> `(Y, finals)` tensors, through the layer's code path."""
    if layer.impl == "builtin":
        return builtin_forward(layer.cfg, layer.module, X, states)
    return forward_of(layer.impl)(layer.cfg, layer.params, X, states)


def _states_in(layer: Model, state, requires_grad=False):
    """A contract-layout NumPy state as tensors (None stays None)."""
    states = states_in(layer.cfg, state, layer.dtype, layer.device)
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


def _probe(layer: Model, dtype: str) -> None:
    """One tiny forward and backward, so that a kernel lacking the dtype fails here, quoted."""
    X = torch.zeros((1, 1, layer.cfg.input_size), dtype=layer.dtype, device=layer.device,
                    requires_grad=True)
    try:
        with torch.enable_grad():
            Y, _ = run_layer(layer, X, None)
            torch.autograd.grad(Y.sum(), [X, *layer.leaves().values()])
    except (RuntimeError, NotImplementedError) as exc:
        path = builtin_name(layer.cfg.cell) if layer.impl == "builtin" else layer.code_path
        raise NotSupported(f"{path} cannot run {dtype} on {layer.device}: torch says: "
                           f"{exc}") from exc


class TorchBackend(Backend):
    """PyTorch: d2l's cells in a Python loop, the fast scratch, or `torch.nn.RNN/LSTM/GRU`."""

    name = "torch"
    builtin_gru = builtin_name("gru")

    def info(self) -> dict:
        return runtime.info()

    def _build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str,
                     device: str) -> Model:
        dev, tdtype = resolve_device(device), TORCH_DTYPES[dtype]
        if impl == "builtin":
            layer = build_model(spec, impl, {}, tdtype, dev, builtin_code_path(spec, tdtype, dev),
                                {"": (spec, params)},
                                lambda named, convert: convert(spec, named))
        else:
            layer = build_model(spec, impl, params, tdtype, dev,
                                code_path_of(impl, spec, tdtype, dev))
        _probe(layer, dtype)
        return layer

    def get_params(self, layer: Model) -> Params:
        return layer.canonical_params()

    def forward(self, layer: Model, X: np.ndarray, state: Optional[list] = None):
        with torch.no_grad():
            Y, finals = run_layer(layer, layer.array(X), _states_in(layer, state))
        return to_numpy(Y), states_out(finals)

    def vjp(self, layer: Model, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        X_t, state_t, leaves = layer.array(X, True), _states_in(layer, state, True), layer.leaves()
        with torch.enable_grad():
            Y, finals = run_layer(layer, X_t, state_t)
            objective = (Y * layer.array(G)).sum()
            for s, g in zip(_flat(finals), _flat(_states_in(layer, G_state))):
                objective = objective + (s * g).sum()
        wrt = [*leaves.values(), X_t, *_flat(state_t)]
        # materialize_grads: an input that does not reach the objective gets zeros, not None.
        grads = [to_numpy(g) for g in torch.autograd.grad(objective, wrt, allow_unused=True,
                                                          materialize_grads=True)]
        named = layer.canonical(dict(zip(leaves, grads)), grads=True)
        dstate = None if state is None else _regroup(layer.cfg, grads[len(leaves) + 1:])
        return VJPResult(to_numpy(Y), states_out(finals), named, grads[len(leaves)], dstate)

    # Language models.

    def _build_lm(self, cfg, params: Params, dtype: str, device: str) -> Model:
        model = lm.build_lm(cfg, params, TORCH_DTYPES[dtype], resolve_device(device))
        _probe_lm(model)
        return model

    def lm_forward(self, model: Model, ids: np.ndarray, state: Optional[list] = None):
        with torch.no_grad():
            logits, finals = lm.forward(model, model.ids_in(ids), lm.lm_states_in(model, state))
        return np.ascontiguousarray(to_numpy(logits)), states_out(finals)

    def lm_loss_grads(self, model: Model, ids: np.ndarray, targets: np.ndarray,
                      state: Optional[list] = None):
        leaves = model.leaves()
        with torch.enable_grad():
            logits, finals = lm.forward(model, model.ids_in(ids), lm.lm_states_in(model, state))
            loss = lm.cross_entropy(logits, model.ids_in(targets))
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True,
                                    materialize_grads=True)
        named = {k: to_numpy(g) for k, g in zip(leaves, grads)}
        return loss.item(), model.canonical(named, grads=True), states_out(finals)

    def make_trainer(self, model: Model, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0) -> Trainer:
        return lm.make_trainer(model, optimizer, lr, clip)


def _probe_lm(model: Model) -> None:
    """One tiny forward and backward, so that a kernel lacking the dtype fails here, quoted."""
    ids = torch.zeros((1, 1), dtype=torch.long, device=model.device)
    try:
        with torch.enable_grad():
            logits, _ = lm.forward(model, ids)
            torch.autograd.grad(logits.sum(), list(model.leaves().values()), allow_unused=True)
    except (RuntimeError, NotImplementedError) as exc:
        raise NotSupported(f"{model.code_path} cannot run {model.dtype} on {model.device}: "
                           f"torch says: {exc}") from exc


BACKEND = TorchBackend()
