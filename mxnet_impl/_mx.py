"""The one place MXNet is imported: MXNet 1.9.1 still uses `np.bool`, removed in NumPy 1.24.

Every module of `mxnet_impl` imports `mx` from here, never `mxnet` directly.
"""
import numpy as np

if "bool" not in np.__dict__:   # hasattr() itself warns on NumPy 1.2x
    np.bool = np.bool_  # the alias MXNet 1.9.1 expects; harmless for NumPy itself

import mxnet as mx  # noqa: E402

__all__ = ["mx", "np"]
