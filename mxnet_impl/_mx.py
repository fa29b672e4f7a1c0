"""The one place MXNet is imported: MXNet 1.9.1 still uses `np.bool`, removed in NumPy 1.24.

Every module of `mxnet_impl` imports `mx` from here, never `mxnet` directly.

Importing MXNet 1.9.1 also lowers the process's OpenMP default to one thread, and PyTorch,
loaded before or after it in the same process, then runs on one thread (docs/performance.md). So
that a process running several frameworks one after another (lm-quality, parity, trajectory)
does not time or train PyTorch single-threaded: a PyTorch already loaded gets its thread count
back, and when `OMP_NUM_THREADS` is unset it is set, once MXNet has loaded (set before, it slows
MXNet's own small operators), to the CPUs this process may use, which torch_impl gives a
PyTorch loaded later. The speed and explain workers set every thread variable themselves, one
framework per process.
"""
import os
import sys

import numpy as np

from common.cpus import cpu_count

if "bool" not in np.__dict__:   # hasattr() itself warns on NumPy 1.2x
    np.bool = np.bool_  # the alias MXNet 1.9.1 expects; harmless for NumPy itself


_torch = sys.modules.get("torch")
_torch_threads = _torch.get_num_threads() if _torch is not None else None
_omp_unset = "OMP_NUM_THREADS" not in os.environ

import mxnet as mx  # noqa: E402

if _torch is not None and _torch.get_num_threads() != _torch_threads:
    _torch.set_num_threads(_torch_threads)
if _omp_unset:  # after MXNet has set itself up, for a PyTorch loaded later
    os.environ["OMP_NUM_THREADS"] = str(cpu_count())

__all__ = ["mx", "np"]
