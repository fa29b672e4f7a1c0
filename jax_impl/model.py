"""The one model handle of the JAX backend: what every experiment (a layer, the language model,
the encoder-decoder, fastbook's models, the explain rungs) builds and trains.

A `Model` holds parameters only, never a hidden state: one flat dict of device arrays in
`params`, the pytree that jitted functions take and `trainer.train_step` replaces. Canonical
names (an explain rung's may be fused, common.rungs.fuse_lstm) sit beside each built-in's
arrays under Flax's native names (convert.py), prefixed by the built-in's place when it has one
(`encoder.l0.layer_0/cell/ir/kernel` in the encoder-decoder), so gradients and updates are
taken with respect to the built-in's own parameters. A Flax module holds no parameters:
`modules` keeps, by place ("" for a model's one stack), the `layers.BuiltinStack` that those
arrays are applied to, for the record (`layers.builtin_forward` makes the same module from the
layer spec inside a jitted function). `to_canonical` turns arrays named as `leaves()` back into
canonical names; `code_path` names the code that runs, for every record made with the model.

Every call runs inside `scope()` (the device as JAX's default, x64 only for float64, "highest"
matmul precision on a GPU: devices.compute_scope) and creates its arrays there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax
import numpy as np

from common.params import Params

from .arrays import from_numpy, ids_in, to_numpy
from .convert import from_native, grads_from_native
from .devices import compute_scope
from .layers import builtin_module, make_builtin


@dataclass
class Model:
    """Parameters of one model: `cfg` (the experiment's config), `impl` ("scratch", "fast",
    "builtin", fastbook's "loop", or an explain rung), dtype (a contract dtype name), device
    (a `jax.Device`), the parameter pytree and the built-ins' Flax modules."""

    cfg: Any
    impl: str
    dtype: str
    device: jax.Device
    params: Dict[str, jax.Array]
    modules: Dict[str, nn.Module] = field(default_factory=dict)
    code_path: str = ""
    # (arrays named as `leaves()`, the native-to-canonical conversion) -> canonical arrays
    to_canonical: Optional[Callable[[Dict[str, np.ndarray], Callable], Params]] = None

    def scope(self):
        """The scope every computation of the model runs in (devices.compute_scope)."""
        return compute_scope(self.device, self.dtype)

    @property
    def module(self) -> Optional[nn.Module]:
        """The built-in stack of a model with one ("" in `modules`), else None."""
        return self.modules.get("")

    def leaves(self) -> Dict[str, jax.Array]:
        """Every trainable array by name: `params` (the built-ins' by Flax's names already)."""
        return dict(self.params)

    def array(self, array) -> jax.Array:
        """A NumPy array as a device array in the model's dtype; call inside `scope()`."""
        return from_numpy(array, self.dtype, self.device)

    def ids_in(self, ids, vocab_size: Optional[int] = None, name: str = "token") -> jax.Array:
        """Token ids as int32 on the device; NumPy ids are range-checked given a vocab size
        (JAX would clamp or zero an out-of-range id where torch raises); call inside `scope()`."""
        return ids_in(ids, None, vocab_size, name)

    def canonical(self, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
        """NumPy arrays named as `leaves()` -> canonical names (gradients by the chain rule)."""
        if self.to_canonical is None:
            return dict(named)
        return self.to_canonical(named, grads_from_native if grads else from_native)

    def canonical_params(self) -> Params:
        """The current parameters in canonical form (writable NumPy copies)."""
        return self.canonical(to_numpy(self.leaves()))


def build_model(cfg, impl: str, leaves: Params, dtype: str, device: jax.Device, code_path: str,
                builtins: Optional[Dict[str, tuple]] = None, to_canonical=None) -> Model:
    """A `Model` holding `leaves` (NumPy) as device arrays and, for each `place -> (LayerSpec,
    canonical layer params)` in `builtins`, the built-in's arrays made from them exactly, under
    `place.` + Flax's native names (no prefix for place ""). Raises `NotSupported` as
    `make_builtin` does, and where `dtype` cannot be computed (float64 without x64)."""
    model = Model(cfg, impl, dtype, device, {}, {}, code_path, to_canonical)
    with model.scope():
        for place, (spec, layer) in (builtins or {}).items():
            native = make_builtin(spec, layer, dtype, None)
            model.params.update({f"{place}.{k}" if place else k: v for k, v in native.items()})
            model.modules[place] = builtin_module(spec, np.dtype(dtype))
        model.params.update({k: from_numpy(v, dtype) for k, v in leaves.items()})
    return model
