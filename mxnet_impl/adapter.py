"""The MXNet Gluon backend (`common.backend.Backend`'s hooks): scratch `nd` loops and Gluon's
fused layers; language models over `lm.py` and `train.py` (a model handle is an `lm.MXNetLM`).

Everything crossing the boundary is NumPy; `.asnumpy()` blocks until MXNet's asynchronous engine
has finished, so results read here are complete. A timing harness that does not read results
must call `mx.nd.waitall()` before stopping its clock.
"""
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from common.backend import Backend, VJPResult, flatten_state
from common.config import LayerSpec
from common.errors import NotSupported

from . import convert, lm, runtime, train
from ._mx import mx
from .arrays import from_numpy, states_in, states_out, to_numpy
from .devices import device_name, resolve_device
from .runtime import enabled_features
from .layers import builtin_forward, builtin_name, code_path_of, forward_of, make_builtin, native_arrays

@dataclass
class MXNetLayer:
    """A built layer: `params` (canonical name -> nd) for scratch and fast, `net` (Gluon block)
    for builtin.

    `hybridized` and `code_path` record which code runs, for parity and speed records.
    """

    spec: LayerSpec
    impl: str
    dtype: str
    device: str
    ctx: Any
    params: Optional[dict] = None
    net: Any = None
    hybridized: bool = False
    code_path: str = ""


def mxnet_error_text(exc):
    """The first meaningful line of an MXNetError (its message, not the traceback lines)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "Stack trace", "[bt]")):
            return line
    return str(exc).strip() or type(exc).__name__


def builtin_code_path(spec, dtype, ctx):
    """Which kernel Gluon's fused layer runs (seen with DNNL_VERBOSE=1 on MXNet 1.9.1, CPU)."""
    name = f"gluon.rnn.{spec.cell.upper()} fused RNN op, hybridized"
    if ctx.device_type == "gpu":
        return f"{name}, cuDNN"
    onednn = (enabled_features().get("MKLDNN")
              and os.environ.get("MXNET_USE_MKLDNN_RNN", "1") != "0")
    # oneDNN's RNN primitive takes float32 only; float64 runs MXNet's own CPU kernel
    return f"{name}, {'oneDNN' if onednn and dtype == 'float32' else 'native CPU kernel'}"


def _to_nd(array, layer):
    return from_numpy(array, layer.dtype, layer.ctx)


def _state_to_nd(state, layer):
    """Contract state (NumPy) -> nd arrays; None stays None (the drivers start from zeros)."""
    return states_in(layer.spec, state, layer.dtype, layer.ctx)


def _dstate(state_nd):
    """Gradients of the initial state, in the contract's layout (zeros where MXNet wrote none)."""
    return states_out([tuple(a.grad for a in s) if isinstance(s, tuple) else s.grad
                       for s in state_nd])


def run_layer(layer, X, state):
    """Forward on nd arrays, dispatching on the impl."""
    if layer.impl == "builtin":
        return builtin_forward(layer.spec, layer.net, X, state)
    return forward_of(layer.impl)(layer.spec, layer.params, X, state)


def _probe(layer):
    """One step forward and backward of the fused kernel: a dtype it lacks fails at build time."""
    X = mx.nd.zeros((1, 1, layer.spec.input_size), ctx=layer.ctx, dtype=layer.dtype)
    with mx.autograd.record():
        Y, _ = builtin_forward(layer.spec, layer.net, X)
    Y.backward()  # Gluon's parameters carry grad_req='write', so Y is in the graph
    mx.nd.waitall()


class MXNetBackend(Backend):
    """MXNet 1.9 Gluon: `scratch` = Python loop over `mx.nd`; `fast` = fused, hoisted,
    hybridized loops with a hand-written backward; `builtin` = `gluon.rnn` layers."""

    name = "mxnet"
    builtin_gru = builtin_name("gru")

    def info(self):
        return runtime.info()

    def _build_layer(self, spec, impl, params, dtype, device):
        """A layer of `impl` holding canonical `params`; NotSupported where MXNet cannot run it."""
        ctx = resolve_device(device)
        layer = MXNetLayer(spec, impl, dtype, device_name(ctx), ctx)
        try:
            self._fill(layer, params)
            if impl == "builtin":  # the scratch ops (nd.dot, elementwise) take both dtypes
                _probe(layer)
        except mx.base.MXNetError as exc:
            raise NotSupported(f"mxnet {impl} {spec.label} {dtype} on {layer.device}: "
                               f"{mxnet_error_text(exc)}") from exc
        return layer

    def _fill(self, layer, params):
        """Put the parameters where `layer.impl` keeps them."""
        if layer.impl != "builtin":
            layer.params = {k: _to_nd(v, layer) for k, v in params.items()}
            layer.code_path = code_path_of(layer.impl, layer.spec)
            return
        layer.net = make_builtin(layer.spec, params, layer.dtype, layer.ctx, hybridize=True)
        layer.hybridized = True
        layer.code_path = builtin_code_path(layer.spec, layer.dtype, layer.ctx)

    def get_params(self, layer):
        """The layer's parameters in canonical form (NumPy, the layer's dtype)."""
        if layer.impl != "builtin":
            return {k: to_numpy(v) for k, v in layer.params.items()}
        return convert.from_native(layer.spec, native_arrays(layer.net))

    def forward(self, layer, X, state=None):
        """`X: (T, B, I)` -> `(Y: (T, B, H*D), final states)` as NumPy."""
        Y, finals = run_layer(layer, _to_nd(X, layer), _state_to_nd(state, layer))
        return to_numpy(Y), states_out(finals)

    def vjp(self, layer, X, state, G, G_state=None):
        """Gradients of `sum(Y*G) + sum(finals*G_state)` w.r.t. canonical params, X, state."""
        X_nd, state_nd = _to_nd(X, layer), _state_to_nd(state, layer)
        for a in [X_nd] + flatten_state(state_nd) + self._grad_params(layer):
            a.attach_grad()  # fresh zero gradient buffers, grad_req='write'
        with mx.autograd.record():
            Y, finals = run_layer(layer, X_nd, state_nd)
        heads, head_grads = [Y], [_to_nd(G, layer)]
        if G_state is not None:
            heads += flatten_state(finals)
            head_grads += [_to_nd(g, layer) for g in flatten_state(G_state)]
        mx.autograd.backward(heads, head_grads=head_grads)
        dstate = None if state is None else _dstate(state_nd)
        return VJPResult(to_numpy(Y), states_out(finals), self._grads(layer),
                         to_numpy(X_nd.grad), dstate)

    @staticmethod
    def _grad_params(layer):
        """Scratch parameters need attach_grad; Gluon's own carry grad_req='write' already."""
        return list(layer.params.values()) if layer.impl != "builtin" else []

    @staticmethod
    def _grads(layer):
        if layer.impl != "builtin":
            return {k: to_numpy(v.grad) for k, v in layer.params.items()}
        return convert.grads_from_native(layer.spec, native_arrays(layer.net, grads=True))

    # Language models.

    def _build_lm(self, cfg, params, dtype, device):
        """An `lm.MXNetLM` holding canonical `params`; NotSupported where MXNet cannot run it."""
        if dtype == "bfloat16":
            raise NotSupported("MXNet 1.9.1 has no bfloat16 for its RNN layers or nd.dot: "
                               "time it in float32")
        spec, ctx = cfg.layer_spec, resolve_device(device)
        code_path = builtin_code_path(spec, dtype, ctx) if cfg.impl == "builtin" else ""
        try:
            model = lm.build_lm(cfg, params, dtype, ctx, code_path)
            _probe_lm(model)
        except mx.base.MXNetError as exc:
            raise NotSupported(f"mxnet {cfg.impl} LM {spec.label} {dtype} on "
                               f"{device_name(ctx)}: {mxnet_error_text(exc)}") from exc
        return model

    def lm_forward(self, model, ids, state=None):
        """`ids: (B, T)` -> `(logits: (B, T, V), final states)` as NumPy."""
        logits, finals = model.forward(model.ids_in(ids), model.states_in(state))
        return to_numpy(logits), states_out(finals)

    def lm_loss_grads(self, model, ids, targets, state=None):
        """`(loss, canonical gradients, final states)` of the mean cross-entropy (NumPy)."""
        loss, finals = lm.loss_and_backward(model, ids, targets, state)
        return float(loss.asscalar()), model.canonical_grads(), states_out(finals)

    def make_trainer(self, model, optimizer="sgd", lr=1.0, clip=1.0):
        """A `train.Trainer`: Gluon's SGD or Adam with d2l's clipping (`clip=None`: off)."""
        return train.make_trainer(model, optimizer, lr, clip)


def _probe_lm(model):
    """One tiny forward and backward, so that a kernel lacking the dtype fails at build time."""
    ids = np.zeros((1, 1), dtype=np.int64)
    lm.loss_and_backward(model, ids, ids)
    mx.nd.waitall()


BACKEND = MXNetBackend()
