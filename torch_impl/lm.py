"""The character language model in PyTorch: pure functions over explicit parameters.

ids `(B, T)` -> inputs `(T, B, I)` (d2l's one-hot of `ids.T`, or a lookup in `embedding (V, E)`)
-> the layer stack (a scratch stack, d2l's or fast, or `nn.RNN/LSTM/GRU`) -> `Y @ W_hq + b_q` -> logits
`(B, T, V)`; the loss is the mean cross-entropy over all B*T positions. State goes in and comes
out in the contract's layout; `TorchLM` holds parameters only, never a hidden state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.config import LMConfig
from common.params import LM_HEAD_KEYS, Params, lm_canonical

from .arrays import from_numpy, ids_in, states_in, to_numpy
from .convert import from_native, grads_from_native
from .layers import builtin_code_path, builtin_forward, code_path_of, forward_of, make_builtin

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


@dataclass
class TorchLM:
    """A language model's parameters: canonical leaf tensors in `params` (the head, and for
    scratch the layer stack too) and, for builtin, the `nn.RNN/LSTM/GRU` in `module`."""

    cfg: LMConfig
    dtype: torch.dtype
    device: torch.device
    params: Dict[str, torch.Tensor]
    module: Optional[nn.Module] = None
    code_path: str = ""  # the layer's kernels, for every record made with this model

    def leaves(self) -> Dict[str, torch.Tensor]:
        """Every trainable tensor by name (canonical, plus torch's names for the built-in)."""
        native = {} if self.module is None else dict(self.module.named_parameters())
        return {**self.params, **native}

    def forward(self, ids: torch.Tensor, state=None):
        """`ids: (B, T)` long tensor -> `(logits: (B, T, V), final states)`."""
        return lm_forward(self.cfg, self.params, ids, state, self.module)

    def ids_in(self, ids) -> torch.Tensor:
        """Token ids (NumPy or tensor) as a long tensor on the model's device."""
        return ids_in(ids, self.device)

    def states_in(self, state):
        """A state in the contract's layout (NumPy or tensors) as tensors; None stays None."""
        return states_in(self.cfg.layer_spec, state, self.dtype, self.device)

    def canonical(self, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
        """NumPy arrays named as `leaves()` -> canonical names (gradients by the chain rule)."""
        if self.module is None:
            return dict(named)
        return lm_canonical(self.cfg.layer_spec, named, grads_from_native if grads else from_native)

    def canonical_params(self) -> Params:
        """The current parameters in canonical form (NumPy copies)."""
        return self.canonical({k: to_numpy(v) for k, v in self.leaves().items()})


def build_lm(cfg: LMConfig, params: Params, dtype: torch.dtype, device: torch.device) -> TorchLM:
    """A `TorchLM` holding canonical `params` (NumPy, already checked and cast) exactly.

    Builtin: the layer stack goes into the module once, in torch's layout, and stays there
    while training; only the head stays canonical. Raises `NotSupported` as `make_builtin` does.
    """
    leaf = lambda a: from_numpy(a, dtype, device).requires_grad_()
    if cfg.impl != "builtin":
        return TorchLM(cfg, dtype, device, {k: leaf(v) for k, v in params.items()},
                       code_path=code_path_of(cfg.impl, cfg.layer_spec, dtype, device))
    layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    module = make_builtin(cfg.layer_spec, layer, dtype, device)
    head = {k: leaf(v) for k, v in params.items() if k in HEAD_KEYS}
    return TorchLM(cfg, dtype, device, head, module,
                   builtin_code_path(cfg.layer_spec, dtype, device))
