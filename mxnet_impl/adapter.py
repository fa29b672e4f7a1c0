"""The MXNet Gluon backend (`common.backend.Backend`'s hooks): scratch `nd` loops and Gluon's
fused layers; language models over `lm.py` and `trainer.py`. Layers and language models are
`model.Model`s: the canonical parameters as Gluon `Parameter`s (scratch and fast) or the
hybridized Gluon layer (builtin); no state is kept in them.

Everything crossing the boundary is NumPy; `.asnumpy()` blocks until MXNet's asynchronous engine
has finished, so results read here are complete. A timing harness that does not read results
must call `mx.nd.waitall()` before stopping its clock.
"""
from typing import Optional

import numpy as np

from common.backend import Backend, VJPResult, flatten_state
from common.config import LayerSpec
from common.errors import NotSupported
from common.params import Params

from . import lm, runtime
from ._mx import mx
from .arrays import states_in, states_out, to_numpy
from .devices import device_name, resolve_device
from .layers import builtin_code_path, builtin_forward, builtin_name, code_path_of, forward_of
from .model import Model, build_model
from .trainer import Trainer


def mxnet_error_text(exc):
    """The first meaningful line of an MXNetError (its message, not the traceback lines)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "Stack trace", "[bt]")):
            return line
    return str(exc).strip() or type(exc).__name__


def run_layer(layer: Model, X, states):
    """`X: (T, B, I)` nd array -> `(Y, finals)` nd arrays, through the layer's code path."""
    if layer.impl == "builtin":
        return builtin_forward(layer.cfg, layer.module, X, states)
    return forward_of(layer.impl)(layer.cfg, layer.arrays(), X, states)


def _states_in(layer: Model, state):
    """Contract state (NumPy) -> nd arrays; None stays None (the drivers start from zeros)."""
    return states_in(layer.cfg, state, layer.dtype, layer.device)


def _dstate(state_nd):
    """Gradients of the initial state, in the contract's layout (zeros where MXNet wrote none)."""
    return states_out([tuple(a.grad for a in s) if isinstance(s, tuple) else s.grad
                       for s in state_nd])


def _probe(layer: Model):
    """One step forward and backward of the fused kernel: a dtype it lacks fails at build time."""
    X = mx.nd.zeros((1, 1, layer.cfg.input_size), ctx=layer.device, dtype=layer.dtype)
    with mx.autograd.record():
        Y, _ = builtin_forward(layer.cfg, layer.module, X)
    Y.backward()  # Gluon's parameters carry grad_req='write', so Y is in the graph
    mx.nd.waitall()


class MXNetBackend(Backend):
    """MXNet 1.9 Gluon: `scratch` = Python loop over `mx.nd`; `fast` = fused, hoisted,
    hybridized loops with a hand-written backward; `builtin` = `gluon.rnn` layers."""

    name = "mxnet"
    builtin_gru = builtin_name("gru")

    def info(self):
        return runtime.info()

    def _build_layer(self, spec: LayerSpec, impl: str, params: Params, dtype: str,
                     device: str) -> Model:
        """A layer of `impl` holding canonical `params`; NotSupported where MXNet cannot run it."""
        ctx = resolve_device(device)
        try:
            if impl == "builtin":
                layer = build_model(spec, impl, {}, dtype, ctx, builtin_code_path(spec, dtype, ctx),
                                    {"": (spec, params)},
                                    lambda named, convert: convert(spec, named))
                _probe(layer)  # the scratch ops (nd.dot, elementwise) take both dtypes
            else:
                layer = build_model(spec, impl, params, dtype, ctx, code_path_of(impl, spec))
        except mx.base.MXNetError as exc:
            raise NotSupported(f"mxnet {impl} {spec.label} {dtype} on {device_name(ctx)}: "
                               f"{mxnet_error_text(exc)}") from exc
        return layer

    def get_params(self, layer: Model) -> Params:
        """The layer's parameters in canonical form (NumPy, the layer's dtype)."""
        return layer.canonical_params()

    def forward(self, layer: Model, X: np.ndarray, state: Optional[list] = None):
        """`X: (T, B, I)` -> `(Y: (T, B, H*D), final states)` as NumPy."""
        Y, finals = run_layer(layer, layer.array(X), _states_in(layer, state))
        return to_numpy(Y), states_out(finals)

    def vjp(self, layer: Model, X: np.ndarray, state: Optional[list], G: np.ndarray,
            G_state: Optional[list] = None) -> VJPResult:
        """Gradients of `sum(Y*G) + sum(finals*G_state)` w.r.t. canonical params, X, state."""
        X_nd, state_nd = layer.array(X, True), _states_in(layer, state)
        for a in flatten_state(state_nd):
            a.attach_grad()  # fresh zero gradient buffers, grad_req='write'
        # the parameters' buffers: Gluon's `Parameter`s carry grad_req='write'
        with mx.autograd.record():
            Y, finals = run_layer(layer, X_nd, state_nd)
        heads, head_grads = [Y], [layer.array(G)]
        if G_state is not None:
            heads += flatten_state(finals)
            head_grads += [layer.array(g) for g in flatten_state(G_state)]
        mx.autograd.backward(heads, head_grads=head_grads)
        dstate = None if state is None else _dstate(state_nd)
        return VJPResult(to_numpy(Y), states_out(finals), layer.canonical_grads(),
                         to_numpy(X_nd.grad), dstate)

    # Language models.

    def _build_lm(self, cfg, params: Params, dtype: str, device: str) -> Model:
        """A language `Model` holding canonical `params`; NotSupported where MXNet cannot run it."""
        if dtype == "bfloat16":
            raise NotSupported("MXNet 1.9.1 has no bfloat16 for its RNN layers or nd.dot: "
                               "time it in float32")
        ctx = resolve_device(device)
        try:
            model = lm.build_lm(cfg, params, dtype, ctx)
            _probe_lm(model)
        except mx.base.MXNetError as exc:
            raise NotSupported(f"mxnet {cfg.impl} LM {cfg.layer_spec.label} {dtype} on "
                               f"{device_name(ctx)}: {mxnet_error_text(exc)}") from exc
        return model

    def lm_forward(self, model: Model, ids: np.ndarray, state: Optional[list] = None):
        """`ids: (B, T)` -> `(logits: (B, T, V), final states)` as NumPy."""
        logits, finals = lm.forward(model, model.ids_in(ids), lm.lm_states_in(model, state))
        return to_numpy(logits), states_out(finals)

    def lm_loss_grads(self, model: Model, ids: np.ndarray, targets: np.ndarray,
                      state: Optional[list] = None):
        """`(loss, canonical gradients, final states)` of the mean cross-entropy (NumPy)."""
        loss, finals = _loss_and_backward(model, ids, targets, state)
        return float(loss.asscalar()), model.canonical_grads(), states_out(finals)

    def make_trainer(self, model: Model, optimizer: str = "sgd", lr: float = 1.0,
                     clip: Optional[float] = 1.0) -> Trainer:
        """A `trainer.Trainer`: Gluon's SGD or Adam with d2l's clipping (`clip=None`: off)."""
        return lm.make_trainer(model, optimizer, lr, clip)


def _loss_and_backward(model: Model, ids, targets, state=None):
    """Forward, mean cross-entropy and backward: gradients left in the `Parameter`s.

    `ids, targets: (B, T)` (NumPy or nd) -> `(loss: nd scalar, final states as nd)`.
    """
    ids, targets, state = model.ids_in(ids), model.ids_in(targets), lm.lm_states_in(model, state)
    with mx.autograd.record():
        logits, finals = lm.forward(model, ids, state)
        loss = lm.cross_entropy(logits, targets)
    loss.backward()
    return loss, finals


def _probe_lm(model: Model):
    """One tiny forward and backward, so that a kernel lacking the dtype fails at build time."""
    ids = np.zeros((1, 1), dtype=np.int64)
    _loss_and_backward(model, ids, ids)
    mx.nd.waitall()


BACKEND = MXNetBackend()
