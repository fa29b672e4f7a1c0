"""The one model handle of the PyTorch backend: what every experiment (a layer, the language
model, the encoder-decoder, fastbook's models, the explain rungs) builds and trains.

A `Model` holds parameters only, never a hidden state: canonical leaf tensors in `params` (an
explain rung's may be fused, common.rungs.fuse_lstm) and the framework's own built-in layers
in `modules`, keyed by where they sit ("" for a model's one stack, "encoder.l0", ... in the
encoder-decoder). `to_canonical` turns arrays named as `leaves()` back into canonical names;
`code_path` names the kernels that run, for every record made with the model. The experiment
modules hold only their forward and loss; `trainer.Trainer` trains any `Model`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from common.params import Params

from .arrays import from_numpy, ids_in, to_numpy
from .convert import from_native, grads_from_native
from .layers import make_builtin


@dataclass
class Model:
    """Parameters of one model: `cfg` (the experiment's config), `impl` ("scratch", "fast",
    "builtin", fastbook's "loop", or an explain rung), dtype, device, leaves and built-ins."""

    cfg: Any
    impl: str
    dtype: torch.dtype
    device: torch.device
    params: Dict[str, torch.Tensor]
    modules: Dict[str, nn.Module] = field(default_factory=dict)
    code_path: str = ""
    # (arrays named as `leaves()`, the native-to-canonical conversion) -> canonical arrays
    to_canonical: Optional[Callable[[Dict[str, np.ndarray], Callable], Params]] = None

    @property
    def module(self) -> Optional[nn.Module]:
        """The built-in stack of a model with one ("" in `modules`), else None."""
        return self.modules.get("")

    def leaves(self) -> Dict[str, torch.Tensor]:
        """Every trainable tensor by name: `params`, then each built-in's by torch's names
        (prefixed by the built-in's place, `encoder.l0.weight_ih_l0`, when it has one)."""
        native = {f"{place}.{name}" if place else name: p
                  for place, module in self.modules.items()
                  for name, p in module.named_parameters()}
        return {**self.params, **native}

    def array(self, array, requires_grad: bool = False) -> torch.Tensor:
        """A NumPy array as a fresh tensor in the model's dtype and device."""
        return from_numpy(array, self.dtype, self.device).requires_grad_(requires_grad)

    def ids_in(self, ids, vocab_size: Optional[int] = None, name: str = "token") -> torch.Tensor:
        """Token ids as a long tensor on the model's device (range-checked given a vocab size)."""
        return ids_in(ids, self.device, vocab_size, name)

    def canonical(self, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
        """NumPy arrays named as `leaves()` -> canonical names (gradients by the chain rule)."""
        if self.to_canonical is None:
            return dict(named)
        return self.to_canonical(named, grads_from_native if grads else from_native)

    def canonical_params(self) -> Params:
        """The current parameters in canonical form (NumPy copies)."""
        return self.canonical({k: to_numpy(v) for k, v in self.leaves().items()})


def build_model(cfg, impl: str, leaves: Params, dtype, device, code_path: str,
                builtins: Optional[Dict[str, tuple]] = None, to_canonical=None) -> Model:
    """A `Model` holding `leaves` (NumPy) as leaf tensors and, for each `place -> (LayerSpec,
    canonical layer params)` in `builtins`, the built-in layer made from them exactly."""
    modules = {place: make_builtin(spec, layer, dtype, device)
               for place, (spec, layer) in (builtins or {}).items()}
    params = {k: from_numpy(v, dtype, device).requires_grad_() for k, v in leaves.items()}
    return Model(cfg, impl, dtype, device, params, modules, code_path, to_canonical)
