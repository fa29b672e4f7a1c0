"""The one model handle of the MXNet backend: what every experiment (a layer, the language
model, the encoder-decoder, fastbook's models, the explain rungs) builds and trains.

A `Model` holds parameters only, never a hidden state: canonical Gluon `Parameter`s in `params`
(an explain rung's may be fused, common.rungs.fuse_lstm) and the hybridized Gluon blocks in
`modules`, keyed by where they sit ("" for a model's one stack, "encoder.l0", ... in the
encoder-decoder). `to_canonical` turns arrays named as `leaves()` back into canonical names;
`code_path` names the kernels that run, for every record made with the model. The experiment
modules hold only their forward and loss; `trainer.Trainer` trains any `Model`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np

from common.params import Params

from ._mx import mx
from .arrays import from_numpy, ids_in, to_numpy
from .convert import from_native, grads_from_native
from .layers import make_builtin


@dataclass
class Model:
    """Parameters of one model: `cfg` (the experiment's config), `impl` ("scratch", "fast",
    "builtin", fastbook's "loop", or an explain rung), dtype (a contract dtype name, as MXNet
    takes it), device (an `mx.Context`), `Parameter`s and hybridized Gluon blocks."""

    cfg: Any
    impl: str
    dtype: str
    device: Any
    params: Dict[str, Any]
    modules: Dict[str, Any] = field(default_factory=dict)
    code_path: str = ""
    # (arrays named as `leaves()`, the native-to-canonical conversion) -> canonical arrays
    to_canonical: Optional[Callable[[Dict[str, np.ndarray], Callable], Params]] = None

    @property
    def module(self):
        """The Gluon block of a model with one ("" in `modules`), else None."""
        return self.modules.get("")

    def leaves(self) -> Dict[str, Any]:
        """Every trainable `Parameter` by name: `params`, then each block's by Gluon's names
        without the block's own prefix (prefixed by the block's place, `encoder.l0.l0_i2h_weight`,
        when it has one)."""
        native = {}
        for place, block in self.modules.items():
            n = len(block.prefix)
            native.update({f"{place}.{name[n:]}" if place else name[n:]: p
                           for name, p in block.collect_params().items()})
        return {**self.params, **native}

    def arrays(self) -> Dict[str, Any]:
        """The canonical parameters' current nd arrays (no copies; the optimizer writes them)."""
        return {k: p.data(self.device) for k, p in self.params.items()}

    def array(self, array, requires_grad: bool = False):
        """A NumPy array as a fresh nd array in the model's dtype and context (with a zero
        gradient buffer, grad_req 'write', if `requires_grad`)."""
        out = from_numpy(array, self.dtype, self.device)
        if requires_grad:
            out.attach_grad()
        return out

    def ids_in(self, ids, vocab_size: Optional[int] = None, name: str = "token"):
        """Token ids as an int64 nd array on the model's context (range-checked given a vocab
        size)."""
        return ids_in(ids, self.device, vocab_size, name)

    def canonical(self, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
        """NumPy arrays named as `leaves()` -> canonical names (gradients by the chain rule)."""
        if self.to_canonical is None:
            return dict(named)
        return self.to_canonical(named, grads_from_native if grads else from_native)

    def canonical_params(self) -> Params:
        """The current parameters in canonical form (NumPy copies)."""
        return self.canonical({k: to_numpy(p.data(self.device))
                               for k, p in self.leaves().items()})

    def canonical_grads(self) -> Params:
        """The gradients left by the last backward pass, in canonical form (NumPy)."""
        return self.canonical({k: to_numpy(p.grad(self.device))
                               for k, p in self.leaves().items()}, grads=True)


def _parameter(name: str, value: np.ndarray, dtype: str, ctx):
    """A Gluon `Parameter` (grad_req 'write') holding the NumPy array `value`."""
    p = mx.gluon.Parameter(name, shape=value.shape, dtype=dtype)
    p.initialize(mx.init.Zero(), ctx=ctx)
    p.set_data(from_numpy(value, dtype, ctx))
    return p


def build_model(cfg, impl: str, leaves: Params, dtype, device, code_path: str,
                builtins: Optional[Dict[str, tuple]] = None, to_canonical=None) -> Model:
    """A `Model` holding `leaves` (NumPy) as Gluon `Parameter`s and, for each `place ->
    (LayerSpec, canonical layer params)` in `builtins`, the hybridized Gluon layer made from
    them exactly."""
    modules = {place: make_builtin(spec, layer, dtype, device)
               for place, (spec, layer) in (builtins or {}).items()}
    params = {k: _parameter(k, v, dtype, device) for k, v in leaves.items()}
    return Model(cfg, impl, dtype, device, params, modules, code_path, to_canonical)
