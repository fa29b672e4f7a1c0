"""The NumPy boundary of the JAX backend: the one place arrays cross it, either way.

The same function names and arguments in `torch_impl/arrays.py` and `mxnet_impl/arrays.py`.
`dtype` is a contract dtype name; `device` is a `jax.Device` (devices.resolve_device). Create
every array inside `scope(device, dtype)`: outside it, JAX truncates float64 input. Copying a
result to NumPy blocks until it is computed.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from common.backend import convert_state
from common.errors import NotSupported
from common.seq2seq import check_ids

from .devices import compute_scope


def framework_dtype(dtype):
    """A contract dtype name as JAX's dtype."""
    return jnp.dtype(dtype)


def to_numpy(x):
    """Device arrays (any pytree, a state included) -> writable NumPy copies; None stays None."""
    return jax.tree.map(np.array, x)  # np.asarray would hand out read-only views


def from_numpy(array, dtype, device=None) -> jax.Array:
    """A NumPy or JAX array in `dtype` on `device` (None: the scope's); call inside `scope()`.

    A JAX array already there in that dtype is used as is (no host round trip).
    """
    with warnings.catch_warnings():
        # JAX truncates float64 to float32 with only a warning when x64 is off.
        warnings.filterwarnings("error", ".*requested .* is not available", UserWarning)
        try:
            out = jnp.asarray(array, dtype=dtype)
        except UserWarning as exc:
            raise NotSupported(f"jax cannot compute {dtype} on {device or 'this device'} here: "
                               f"jax says: {exc}") from exc
    return out if device is None else jax.device_put(out, device)


def ids_in(ids, device=None, vocab_size=None, name="token") -> jax.Array:
    """Token ids (NumPy or JAX) as int32 on `device`; NumPy ids are range-checked against
    `vocab_size` when it is given (JAX would clamp or zero an out-of-range id where torch
    raises)."""
    if vocab_size is not None and not isinstance(ids, jax.Array):
        ids = check_ids(ids, vocab_size, name)
    out = jnp.asarray(ids, dtype=jnp.int32)
    return out if device is None else jax.device_put(out, device)


def states_in(spec, state, dtype, device=None, batch=None):
    """A contract-layout state (NumPy or JAX) as device arrays, LSTM pairs as tuples; None ->
    zeros of `batch` rows, so that one executable serves both."""
    if state is None:
        zeros = lambda: jnp.zeros((batch, spec.hidden_size), dtype)
        state = [(zeros(), zeros()) if spec.cell == "lstm" else zeros()
                 for _ in range(spec.num_layers * spec.num_directions)]
    return convert_state(spec, state, lambda a: from_numpy(a, dtype, device))


def states_out(states) -> list:
    """Final states as NumPy in the contract's layout (LSTM pairs stay tuples)."""
    return to_numpy(list(states))


def scope(device, dtype):
    """`device` as JAX's default, x64 for float64, full matmul precision on a GPU
    (devices.compute_scope)."""
    return compute_scope(device, dtype)
