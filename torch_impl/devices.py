"""Device names -> `torch.device`, and dtype names -> `torch.dtype`.

Resolving a GPU also turns TF32 off (`torch.backends.cuda.matmul.allow_tf32` and
`torch.backends.cudnn.allow_tf32`): with TF32 on, float32 matmuls and cuDNN RNNs keep only 10
mantissa bits (relative error ~1e-3), far outside the float32 parity tolerance. A process asked
for TF32 (`common.precision`) gets it on instead.
"""
from __future__ import annotations

import torch

from common.errors import DeviceUnavailable
from common.precision import tf32_allowed

GPU_NAMES = ("gpu", "cuda")
# The contract's dtype names (common.config.SPEED_DTYPES) as torch dtypes.
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN on or off (off: full float32, as parity needs)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _no_gpu_message() -> str:
    """Why torch sees no GPU, and what to do about it."""
    if torch.version.cuda is None:
        return (f"a GPU was asked for, but torch {torch.__version__} is a CPU-only build: "
                "install a CUDA build of torch (on Linux, `pip install 'rnnbench[torch]'` from "
                "PyPI gives one; elsewhere see https://pytorch.org/get-started/locally/)")
    return (f"a GPU was asked for, but torch {torch.__version__} (CUDA {torch.version.cuda}) "
            "sees none: check the NVIDIA driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES")


def resolve_device(name="cpu") -> torch.device:
    """`"cpu"` -> CPU; `"gpu"`, `"cuda"` (optionally `":N"`) -> that CUDA device, TF32 off."""
    kind, _, index = str(name).strip().lower().partition(":")
    if kind == "cpu":
        return torch.device("cpu")
    if kind not in GPU_NAMES:
        raise ValueError(f"unknown device {name!r}: choose 'cpu' or 'gpu' "
                         "(alias 'cuda'; add ':N' for one of several)")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(_no_gpu_message())
    set_tf32(tf32_allowed())
    if not index:
        return torch.device("cuda")
    if not index.isdigit() or int(index) >= torch.cuda.device_count():
        raise DeviceUnavailable(f"no CUDA device {name!r}: torch sees {torch.cuda.device_count()}")
    return torch.device("cuda", int(index))


def device_names() -> list:
    """Names of the CUDA devices torch sees (empty without a GPU)."""
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
