"""The NumPy boundary of the MXNet backend: the one place arrays cross it, either way.

The same function names and arguments in `torch_impl/arrays.py` and `jax_impl/arrays.py`.
`dtype` is a contract dtype name; `device` is an `mx.Context` (devices.resolve_device).
Reading an `nd` array to NumPy (`.asnumpy()`) blocks until MXNet's engine has computed it.
"""
import contextlib

import numpy as np

from common.backend import convert_state
from common.seq2seq import check_ids

from ._mx import mx

nd = mx.nd


def framework_dtype(dtype) -> str:
    """A contract dtype name as MXNet's (NumPy's) name."""
    return np.dtype(dtype).name


def to_numpy(x):
    """An `nd` array, or a list/tuple (a state) of them, as NumPy copies; None stays None."""
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return type(x)(map(to_numpy, x))
    return x.asnumpy()


def from_numpy(array, dtype, device=None):
    """NumPy -> a dense `nd` array on `device` in `dtype` (an `nd` array: moved to `device`).

    `nd.ndarray.array` is the dense constructor behind `nd.array` (which defaults to float32),
    minus its scipy-sparse check, which warns on every call with current SciPy.
    """
    if isinstance(array, nd.NDArray):
        return array.as_in_context(device)
    return nd.ndarray.array(np.asarray(array), ctx=device, dtype=dtype)


def ids_in(ids, device=None, vocab_size=None, name="token"):
    """Token ids (NumPy or nd) as an int64 `nd` array on `device`; range-checked against
    `vocab_size` when it is given."""
    if isinstance(ids, nd.NDArray):
        return ids.as_in_context(device)
    if vocab_size is not None:
        ids = check_ids(ids, vocab_size, name)
    return from_numpy(ids, "int64", device)


def states_in(spec, state, dtype, device=None, batch=None):
    """A contract-layout state (NumPy or nd) as `nd` arrays, LSTM pairs as tuples; None stays
    None (the drivers start from zeros; `batch` is for frameworks that need them made here)."""
    if state is None:
        return None
    return convert_state(spec, state, lambda a: from_numpy(a, dtype, device))


def states_out(states) -> list:
    """Final states as NumPy in the contract's layout (LSTM pairs stay tuples)."""
    return to_numpy(list(states))


def scope(device, dtype):
    """The scope a computation runs in: nothing to set for MXNet (arrays carry their context)."""
    return contextlib.nullcontext()
