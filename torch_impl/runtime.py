"""What the PyTorch runtime is: versions, devices, threads, the barrier that ends timed work.

The same function names in `mxnet_impl/runtime.py` and `jax_impl/runtime.py`; `info()` has the
schema `common.backend.INFO_KEYS` in all three (torch's own settings under `details`).
"""
from __future__ import annotations

import torch

from .devices import device_names


def versions() -> dict:
    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def gpu_names() -> list:
    return device_names()


def threads_used() -> dict:
    return {"torch.get_num_threads": torch.get_num_threads(),
            "torch.get_num_interop_threads": torch.get_num_interop_threads()}


def pin_threads(threads: int) -> None:
    """Intra-op threads for every CPU kernel (ATen, oneDNN, MKL)."""
    torch.set_num_threads(threads)


def make_sync(device: torch.device):
    """The barrier that ends a timed region on `device`."""
    if device.type == "cuda":
        return lambda _result=None: torch.cuda.synchronize(device)
    return lambda _result=None: None  # CPU ops have finished when they return


def default_device() -> str:
    return str(torch.get_default_device())


def info() -> dict:
    """Versions, devices, threads and the kernels' switches (JSON-able)."""
    threads = {"num_threads": torch.get_num_threads(),
               "num_interop_threads": torch.get_num_interop_threads()}
    details = {
        **threads,
        "cuda_available": torch.cuda.is_available(),
        "mkl_available": torch.backends.mkl.is_available(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),  # oneDNN LSTM off if False
    }
    return {"framework": "torch", "versions": versions(), "devices": ["cpu", *gpu_names()],
            "threads": threads, "default_device": default_device(), "details": details}
