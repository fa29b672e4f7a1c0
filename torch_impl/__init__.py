"""torch_impl: the PyTorch backend. The framework is imported only by its submodules, and here
only where MXNet was loaded first: importing MXNet 1.9.1 lowers the process's OpenMP default to
one thread, so a PyTorch loaded after it takes the thread count mxnet_impl/_mx.py put in
`OMP_NUM_THREADS` (the CPUs this process may use, unless the user set it)."""
import os as _os
import sys as _sys

_threads = _os.environ.get("OMP_NUM_THREADS", "")
if "mxnet" in _sys.modules and _threads.isdigit():
    import torch as _torch
    if _torch.get_num_threads() < int(_threads):
        _torch.set_num_threads(int(_threads))
