"""The character language model in PyTorch: pure functions over explicit parameters.

ids `(B, T)` -> inputs `(T, B, I)` (d2l's one-hot of `ids.T`, or a lookup in `embedding (V, E)`)
-> the layer stack (a scratch stack, d2l's or fast, or `nn.RNN/LSTM/GRU`) -> `Y @ W_hq + b_q` -> logits
`(B, T, V)`; the loss is the mean cross-entropy over all B*T positions. State goes in and comes
out in the contract's layout; the `model.Model` holds parameters only, never a hidden state.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.config import LMConfig
from common.params import LM_HEAD_KEYS, Params, duplicate_bias_masks, lm_canonical

from .arrays import states_in
from .convert import NATIVE_GATES, native_suffixes
from .layers import builtin_code_path, builtin_forward, code_path_of, forward_of
from .model import Model, build_model
from .trainer import Trainer, make_optimizer

HEAD_KEYS = LM_HEAD_KEYS  # canonical keys outside the layer stack


def one_hot_or_embed(cfg: LMConfig, params, ids: torch.Tensor) -> torch.Tensor:
    """The layer's time-major inputs: `ids: (B, T)` -> `X: (T, B, V)` one-hot or `(T, B, E)`."""
    if cfg.embed_size is None:
        return F.one_hot(ids.T, cfg.vocab_size).to(params["W_hq"].dtype)
    return F.embedding(ids.T, params["embedding"])


def lm_forward(cfg: LMConfig, params, ids: torch.Tensor, state=None,
               module: Optional[nn.Module] = None):
    """`ids: (B, T)` -> `(logits: (B, T, V), final states)`; `state=None` means zeros.

    `params`: tensors by canonical name. For `cfg.impl == "builtin"` the layer stack's weights
    live in `module` (the `nn.RNN/LSTM/GRU`, in torch's own layout) and `params` holds the rest.
    """
    X = one_hot_or_embed(cfg, params, ids)
    if cfg.impl == "builtin":
        Y, finals = builtin_forward(cfg.layer_spec, module, X, state)
    else:
        Y, finals = forward_of(cfg.impl)(cfg.layer_spec, params, X, state)
    logits = Y @ params["W_hq"] + params["b_q"]  # (T, B, V)
    return logits.transpose(0, 1), finals


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every (batch, step): `logits: (B, T, V)`, `targets: (B, T)`."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def detach_state(states) -> List:
    """The states cut from the graph (d2l's `state.detach_()`), same layout."""
    return [tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach()
            for st in states]


def forward(model: Model, ids: torch.Tensor, state=None):
    """A built LM's forward: `ids: (B, T)` long tensor -> `(logits: (B, T, V), final states)`."""
    return lm_forward(model.cfg, model.params, ids, state, model.module)


def lm_states_in(model: Model, state, batch=None):
    """A state in the contract's layout (NumPy or tensors) as tensors; None stays None."""
    return states_in(model.cfg.layer_spec, state, model.dtype, model.device, batch)


def loss(model: Model, ids, targets, state=None):
    """The trainer's loss: `(mean cross-entropy, the same, detached final states)`."""
    logits, finals = forward(model, model.ids_in(ids), lm_states_in(model, state))
    value = cross_entropy(logits, model.ids_in(targets))
    return value, value, detach_state(finals)


def bias_masks(model: Model) -> Dict[str, np.ndarray]:
    """`common.params.duplicate_bias_masks` by torch's names (`bias_hh_l0`, ...) for the
    built-in, by canonical names for scratch (trainer.py says why); NumPy, the trainer casts them."""
    spec = model.cfg.layer_spec
    names = None if model.module is None else [f"bias_hh_{s}" for _, s in native_suffixes(spec)]
    return duplicate_bias_masks(spec, names, NATIVE_GATES[spec.cell])


def make_trainer(model: Model, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping):
    `step(ids, targets, state) -> (loss, detached state)`."""
    return Trainer(model, loss, make_optimizer(model, optimizer, lr), clip, bias_masks(model))


def build_lm(cfg: LMConfig, params: Params, dtype: torch.dtype, device: torch.device) -> Model:
    """A `Model` holding canonical `params` (NumPy, already checked and cast) exactly.

    Builtin: the layer stack goes into the module once, in torch's layout, and stays there
    while training; only the head stays canonical. Raises `NotSupported` as `make_builtin` does.
    """
    spec = cfg.layer_spec
    if cfg.impl != "builtin":
        return build_model(cfg, cfg.impl, params, dtype, device,
                           code_path_of(cfg.impl, spec, dtype, device))
    layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    head = {k: v for k, v in params.items() if k in HEAD_KEYS}
    return build_model(cfg, cfg.impl, head, dtype, device, builtin_code_path(spec, dtype, device),
                       {"": (spec, layer)},
                       lambda named, convert: lm_canonical(spec, named, convert))
