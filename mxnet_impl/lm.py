"""The character language model in MXNet: pure functions over explicit parameters.

ids `(B, T)` -> inputs `(T, B, I)` (d2l's one-hot of `ids.T`, or a lookup in `embedding (V, E)`)
-> the layer stack (a scratch stack, d2l's or fast, or Gluon's fused `rnn.RNN/LSTM/GRU`) -> `Y @ W_hq + b_q` ->
logits `(B, T, V)`; the loss is the mean cross-entropy over all B*T positions. State goes in and
comes out in the contract's layout; `MXNetLM` holds parameters only, never a hidden state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

from common.config import LMConfig
from common.params import LM_HEAD_KEYS, Params, lm_canonical

from ._mx import mx
from .arrays import from_numpy, ids_in, states_in, to_numpy
from .convert import from_native, grads_from_native
from .layers import builtin_forward, code_path_of, forward_of, make_builtin

nd = mx.nd

HEAD_KEYS = LM_HEAD_KEYS  # canonical keys outside the layer stack
HEAD_CODE_PATH = "; output layer nd.FullyConnected, imperative"


def one_hot_or_embed(cfg: LMConfig, params, ids):
    """The layer's time-major inputs: `ids: (B, T)` -> `X: (T, B, V)` one-hot or `(T, B, E)`."""
    dtype = np.dtype(params["W_hq"].dtype).name
    if cfg.embed_size is None:
        return nd.one_hot(ids.T, cfg.vocab_size, dtype=dtype)
    return nd.Embedding(ids.T, params["embedding"], input_dim=cfg.vocab_size,
                        output_dim=cfg.embed_size, dtype=dtype)


def output_layer(params, Y):
    """`Y @ W_hq + b_q`: `Y: (T, B, H)` -> `(T, B, V)`.

    `FullyConnected` (weight `(V, H)`, hence the transpose) runs on oneDNN; `nd.dot` would go
    to MXNet's slow bundled OpenBLAS (docs/performance.md). Same math, same gradients.
    """
    W_hq = params["W_hq"]
    return nd.FullyConnected(Y, W_hq.T, params["b_q"], num_hidden=W_hq.shape[1], flatten=False)


def lm_forward(cfg: LMConfig, params, ids, state=None, net=None):
    """`ids: (B, T)` -> `(logits: (B, T, V), final states)`; `state=None` means zeros.

    `params`: nd arrays by canonical name. For `cfg.impl == "builtin"` the layer stack's weights
    live in `net` (the Gluon block, in its own layout) and `params` holds the rest.
    """
    X = one_hot_or_embed(cfg, params, ids)
    if cfg.impl == "builtin":
        if cfg.embed_size is None and mx.autograd.is_recording():
            # MXNet 1.9.1's native CPU RNN kernel (float64, or MXNET_USE_MKLDNN_RNN=0) returns
            # wrong layer-0 gradients in a stack of 2+ layers when no input gradient is asked
            # for; asking for one costs a (T*B, G*H) x (G*H, V) product and fixes it.
            X.attach_grad()
        Y, finals = builtin_forward(cfg.layer_spec, net, X, state)
    else:
        Y, finals = forward_of(cfg.impl)(cfg.layer_spec, params, X, state)
    return nd.swapaxes(output_layer(params, Y), 0, 1), finals


def cross_entropy(logits, targets):
    """Mean cross-entropy over every (batch, step): `logits: (B, T, V)`, `targets: (B, T)`.

    What `gluon.loss.SoftmaxCrossEntropyLoss` computes, averaged over all positions as in d2l.
    """
    return -nd.pick(nd.log_softmax(logits, axis=-1), targets, axis=-1).mean()


def detach_state(states) -> List:
    """The states cut from the graph (d2l's `s.detach()`), same layout."""
    return [tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach()
            for st in states]


@dataclass
class MXNetLM:
    """A language model's parameters: Gluon `Parameter`s by canonical name in `params` (the
    head, and for scratch and fast the layer stack too) and, for builtin, the fused Gluon layer `net`."""

    cfg: LMConfig
    dtype: str
    ctx: Any
    params: Dict[str, Any]
    net: Any = None
    code_path: str = ""  # the layer's kernels, for every record made with this model

    def leaves(self) -> Dict[str, Any]:
        """Every trainable `Parameter` by name (canonical, plus Gluon's names for the built-in)."""
        if self.net is None:
            return dict(self.params)
        n = len(self.net.prefix)
        native = {name[n:]: p for name, p in self.net.collect_params().items()}
        return {**self.params, **native}

    def arrays(self) -> Dict[str, Any]:
        """The canonical parameters' current nd arrays (no copies; the optimizer writes them)."""
        return {k: p.data(self.ctx) for k, p in self.params.items()}

    def forward(self, ids, state=None):
        """`ids: (B, T)` int nd array -> `(logits: (B, T, V), final states)` as nd arrays."""
        return lm_forward(self.cfg, self.arrays(), ids, state, self.net)

    def ids_in(self, ids):
        """Token ids (NumPy or nd) as an int64 nd array on the model's context."""
        return ids_in(ids, self.ctx)

    def states_in(self, state):
        """A state in the contract's layout (NumPy or nd) as nd arrays; None stays None."""
        return states_in(self.cfg.layer_spec, state, self.dtype, self.ctx)

    def canonical(self, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
        """NumPy arrays named as `leaves()` -> canonical names (gradients by the chain rule)."""
        if self.net is None:
            return dict(named)
        return lm_canonical(self.cfg.layer_spec, named, grads_from_native if grads else from_native)

    def canonical_params(self) -> Params:
        """The current parameters in canonical form (NumPy copies)."""
        return self.canonical({k: to_numpy(p.data(self.ctx)) for k, p in self.leaves().items()})

    def canonical_grads(self) -> Params:
        """The gradients left by the last backward pass, in canonical form (NumPy)."""
        return self.canonical({k: to_numpy(p.grad(self.ctx)) for k, p in self.leaves().items()},
                              grads=True)


def make_parameter(name, value, dtype, ctx):
    """A Gluon `Parameter` (grad_req 'write') holding the NumPy array `value`."""
    p = mx.gluon.Parameter(name, shape=value.shape, dtype=dtype)
    p.initialize(mx.init.Zero(), ctx=ctx)
    p.set_data(from_numpy(value, dtype, ctx))
    return p


def build_lm(cfg: LMConfig, params: Params, dtype: str, ctx, code_path: str = "") -> MXNetLM:
    """An `MXNetLM` holding canonical `params` (NumPy, already checked and cast) exactly;
    `code_path` names the built-in layer's kernel (adapter.builtin_code_path).

    Builtin: the layer stack goes into the hybridized Gluon layer once, in its layout, and stays
    there while training; only the head stays canonical.
    """
    as_params = lambda keys: {k: make_parameter(k, params[k], dtype, ctx) for k in keys}
    if cfg.impl != "builtin":
        return MXNetLM(cfg, dtype, ctx, as_params(params),
                       code_path=code_path_of(cfg.impl, cfg.layer_spec) + HEAD_CODE_PATH)
    layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    net = make_builtin(cfg.layer_spec, layer, dtype, ctx)
    head = [k for k in params if k in HEAD_KEYS]
    return MXNetLM(cfg, dtype, ctx, as_params(head), net, code_path + HEAD_CODE_PATH)


def loss_and_backward(model: MXNetLM, ids, targets, state=None):
    """Forward, mean cross-entropy and backward: gradients left in the `Parameter`s.

    `ids, targets: (B, T)` (NumPy or nd) -> `(loss: nd scalar, final states as nd)`.
    """
    ids, targets, state = model.ids_in(ids), model.ids_in(targets), model.states_in(state)
    with mx.autograd.record():
        logits, finals = model.forward(ids, state)
        loss = cross_entropy(logits, targets)
    loss.backward()
    return loss, finals
