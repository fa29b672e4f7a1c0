"""The NumPy boundary of the PyTorch backend: the one place arrays cross it, either way.

The same function names and arguments in `mxnet_impl/arrays.py` and `jax_impl/arrays.py`.
`dtype` is a contract dtype name ("float32", "float64", "bfloat16") or a `torch.dtype`;
`device` is a `torch.device` (devices.resolve_device).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from common.backend import convert_state
from common.seq2seq import check_ids

from .devices import TORCH_DTYPES


def framework_dtype(dtype) -> torch.dtype:
    """A contract dtype name (or a torch dtype) as a `torch.dtype`."""
    return TORCH_DTYPES.get(dtype, dtype)


def to_numpy(x):
    """A tensor, or a list/tuple (a state) of them, as writable NumPy copies; None stays None."""
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return type(x)(map(to_numpy, x))
    return x.detach().cpu().numpy().copy()  # on CPU .numpy() aliases the tensor


def from_numpy(array, dtype, device=None) -> torch.Tensor:
    """A NumPy array as a fresh tensor in `dtype` on `device` (a tensor: moved, no copy)."""
    if isinstance(array, torch.Tensor):
        return torch.as_tensor(array, dtype=framework_dtype(dtype), device=device)
    return torch.tensor(np.asarray(array), dtype=framework_dtype(dtype), device=device)


def ids_in(ids, device=None, vocab_size=None, name="token") -> torch.Tensor:
    """Token ids (NumPy or tensor) as a long tensor on `device`; range-checked against
    `vocab_size` when it is given."""
    if vocab_size is not None and not isinstance(ids, torch.Tensor):
        ids = check_ids(ids, vocab_size, name)
    return torch.as_tensor(ids, dtype=torch.long, device=device)


def states_in(spec, state, dtype, device=None, batch=None):
    """A contract-layout state (NumPy or tensors) as tensors, LSTM pairs as tuples; None stays
    None (the drivers start from zeros; `batch` is for frameworks that need them made here)."""
    if state is None:
        return None
    return convert_state(spec, state, lambda a: from_numpy(a, dtype, device))


def states_out(states) -> list:
    """Final states as NumPy in the contract's layout (LSTM pairs stay tuples)."""
    return to_numpy(list(states))


def scope(device, dtype):
    """The scope a computation runs in: nothing to set for torch (arrays carry their device)."""
    return contextlib.nullcontext()
