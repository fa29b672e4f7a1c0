"""The character language model in MXNet: pure functions over explicit parameters.

ids `(B, T)` -> inputs `(T, B, I)` (d2l's one-hot of `ids.T`, or a lookup in `embedding (V, E)`)
-> the layer stack (a scratch stack, d2l's or fast, or Gluon's fused `rnn.RNN/LSTM/GRU`) -> `Y @ W_hq + b_q` ->
logits `(B, T, V)`; the loss is the mean cross-entropy over all B*T positions. State goes in and
comes out in the contract's layout; the `model.Model` holds parameters only, never a hidden
state.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from common.config import LMConfig
from common.params import LM_HEAD_KEYS, Params, duplicate_bias_masks, lm_canonical, prefixes

from ._mx import mx
from .arrays import states_in
from .convert import NATIVE_GATES, native_prefix
from .layers import builtin_code_path, builtin_forward, code_path_of, forward_of
from .model import Model, build_model
from .trainer import Trainer, make_optimizer

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


def lm_forward(cfg: LMConfig, params, ids, state=None, module=None):
    """`ids: (B, T)` -> `(logits: (B, T, V), final states)`; `state=None` means zeros.

    `params`: nd arrays by canonical name. For `cfg.impl == "builtin"` the layer stack's weights
    live in `module` (the Gluon block, in its own layout) and `params` holds the rest.
    """
    X = one_hot_or_embed(cfg, params, ids)
    if cfg.impl == "builtin":
        if cfg.embed_size is None and mx.autograd.is_recording():
            # MXNet 1.9.1's native CPU RNN kernel (float64, or MXNET_USE_MKLDNN_RNN=0) returns
            # wrong layer-0 gradients in a stack of 2+ layers when no input gradient is asked
            # for; asking for one costs a (T*B, G*H) x (G*H, V) product and fixes it.
            X.attach_grad()
        Y, finals = builtin_forward(cfg.layer_spec, module, X, state)
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


def forward(model: Model, ids, state=None):
    """A built LM's forward: `ids: (B, T)` int nd array -> `(logits: (B, T, V), final states)`."""
    return lm_forward(model.cfg, model.arrays(), ids, state, model.module)


def lm_states_in(model: Model, state, batch=None):
    """A state in the contract's layout (NumPy or nd) as nd arrays; None stays None."""
    return states_in(model.cfg.layer_spec, state, model.dtype, model.device, batch)


def loss(model: Model, ids, targets, state=None):
    """The trainer's loss (call under `autograd.record()`): `(mean cross-entropy, the same,
    detached final states)`; `ids, targets: (B, T)` NumPy or nd."""
    logits, finals = forward(model, model.ids_in(ids), lm_states_in(model, state))
    value = cross_entropy(logits, model.ids_in(targets))
    return value, value, detach_state(finals)


def bias_masks(model: Model) -> Dict[str, np.ndarray]:
    """`common.params.duplicate_bias_masks` by Gluon's names (`l0_h2h_bias`, ...) for the
    built-in, by canonical names for scratch (trainer.py says why); NumPy, the trainer casts them."""
    spec = model.cfg.layer_spec
    names = (None if model.module is None
             else [native_prefix(p) + "h2h_bias" for p in prefixes(spec)])
    return duplicate_bias_masks(spec, names, NATIVE_GATES[spec.cell])


def make_trainer(model: Model, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping):
    `step(ids, targets, state) -> (loss, detached state)`."""
    return Trainer(model, loss, make_optimizer(model, optimizer, lr), clip, bias_masks(model))


def build_lm(cfg: LMConfig, params: Params, dtype: str, device) -> Model:
    """A `Model` holding canonical `params` (NumPy, already checked and cast) exactly, in
    `dtype` on `device` (an `mx.Context`).

    Builtin: the layer stack goes into the hybridized Gluon layer once, in its layout, and stays
    there while training; only the head stays canonical.
    """
    spec = cfg.layer_spec
    if cfg.impl != "builtin":
        return build_model(cfg, cfg.impl, params, dtype, device,
                           code_path_of(cfg.impl, spec) + HEAD_CODE_PATH)
    layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    head = {k: v for k, v in params.items() if k in HEAD_KEYS}
    path = builtin_code_path(spec, dtype, device) + HEAD_CODE_PATH
    return build_model(cfg, cfg.impl, head, dtype, device, path, {"": (spec, layer)},
                       lambda named, convert: lm_canonical(spec, named, convert))
