"""Device names -> `jax.Device`, and the scope every computation of a layer runs in.

On a GPU, parity needs full float32 matmuls: XLA's default precision there may use TF32 (10
mantissa bits, errors ~1e-3). JAX has no global switch worth flipping for one layer, so
`compute_scope` sets `jax.default_matmul_precision("highest")` around each call on a GPU device
(the setting is part of JAX's jit cache key, so it cannot leak into other compiled code).
float64 needs JAX's x64 mode; `compute_scope` enables it only for the call, so the rest of the
process keeps JAX's float32 default.

This module is also the one place that bridges JAX versions (the supported range runs from 0.7,
the last that installs beside MXNet's NumPy 1, to today's): import `enable_x64` from here.
"""
from __future__ import annotations

import contextlib

import jax

try:  # JAX >= 0.8 has the x64 switch at top level; older releases in jax.experimental
    from jax import enable_x64
except ImportError:  # pragma: no cover - depends on the installed JAX
    from jax.experimental import enable_x64

from common.errors import DeviceUnavailable
from common.precision import tf32_allowed

GPU_NAMES = ("gpu", "cuda")
PARITY_PRECISION = "highest"
TF32_PRECISION = "tensorfloat32"   # what a process asked for TF32 (common.precision) runs


def _gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # "Unknown backend: 'gpu' requested, but no platforms ..."
        return []


def _no_gpu_message() -> str:
    seen = ", ".join(sorted({d.platform for d in jax.devices()}))
    return (f"a GPU was asked for, but jax {jax.__version__} sees only: {seen}. Install the CUDA "
            "build of jaxlib (`pip install -U 'jax[cuda12]'`, Linux x86_64/aarch64) and check "
            "the NVIDIA driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES")


def resolve_device(name="cpu") -> jax.Device:
    """`"cpu"` -> the first CPU device; `"gpu"`, `"cuda"` (optionally `":N"`) -> that GPU."""
    kind, _, index = str(name).strip().lower().partition(":")
    if kind == "cpu":
        return jax.devices("cpu")[0]
    if kind not in GPU_NAMES:
        raise ValueError(f"unknown device {name!r}: choose 'cpu' or 'gpu' "
                         "(alias 'cuda', ':N' for one)")
    gpus = _gpus()
    if not gpus:
        raise DeviceUnavailable(_no_gpu_message())
    if not index:
        return gpus[0]
    if not index.isdigit() or int(index) >= len(gpus):
        raise DeviceUnavailable(f"no GPU {name!r}: jax sees {len(gpus)}")
    return gpus[int(index)]


def is_gpu(device: jax.Device) -> bool:
    return device.platform == "gpu"


@contextlib.contextmanager
def compute_scope(device: jax.Device, dtype: str):
    """`device` as JAX's default, x64 on for float64, "highest" precision on a GPU; undone on exit.

    Create every array of the call inside the scope: outside it, JAX truncates float64 input.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.default_device(device))  # new arrays land there directly
        if dtype == "float64":
            stack.enter_context(enable_x64(True))
        if is_gpu(device):
            stack.enter_context(jax.default_matmul_precision(
                TF32_PRECISION if tf32_allowed() else PARITY_PRECISION))
        yield


def device_names() -> list:
    """Every device JAX's default backend sees, e.g. `cpu:0 (cpu)`, `gpu:0 (NVIDIA H100 ...)`."""
    return [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()]
