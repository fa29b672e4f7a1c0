"""Device selection for the MXNet backend: "cpu" -> `mx.cpu()`, "gpu"/"cuda" (":N") -> `mx.gpu(N)`.

Resolving a GPU sets `NVIDIA_TF32_OVERRIDE=0`, which makes cuBLAS and cuDNN keep full fp32
precision on Ampere and later (MXNet 1.9 has no switch of its own for TF32); parity needs that.
The libraries read it when they start, so it acts only if no GPU work ran earlier in the
process: set it in the environment before starting Python to be sure.
"""
import os

from common.errors import DeviceUnavailable, RnnbenchError
from common.precision import tf32_allowed

from ._mx import mx

GPU_HINT = ("install an MXNet build with CUDA matching your driver (for example "
            "pip install mxnet-cu112==1.9.1) on a machine where nvidia-smi lists a GPU")


def _split(name):
    """`"gpu:1"` -> `("gpu", 1)`; a bare name gets index 0."""
    kind, _, index = str(name).strip().lower().partition(":")
    if index and not index.isdigit():
        raise RnnbenchError(f"bad device {name!r}: use cpu, gpu or gpu:N")
    return kind, int(index or 0)


def _build_note() -> str:
    """", a CPU-only build" when this MXNet was built without CUDA (mx.runtime's feature list)."""
    try:
        cuda = mx.runtime.Features().is_enabled("CUDA")
    except Exception:  # pragma: no cover - very old builds have no feature list
        return ""
    return "" if cuda else " (this is MXNet's CPU-only build: no GPU build is installed)"


def resolve_device(name="cpu"):
    """The `mx.Context` for `name` ("cpu", "gpu", "cuda", "gpu:N"); RnnbenchError if unseen."""
    kind, index = _split(name)
    if kind == "cpu":
        return mx.cpu()
    if kind not in ("gpu", "cuda"):
        raise RnnbenchError(f"unknown device {name!r}: choose cpu or gpu")
    try:
        seen = mx.context.num_gpus()
    except mx.base.MXNetError:  # a CUDA build without a usable driver raises here
        seen = 0
    if index >= seen:
        raise DeviceUnavailable(f"MXNet {mx.__version__} sees {seen} GPU(s), so {name!r} is "
                                f"unavailable{_build_note()}: {GPU_HINT}")
    if not tf32_allowed():   # else the libraries' default: TF32 on Ampere and later
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
    return mx.gpu(index)


def device_name(ctx):
    """`mx.cpu()` -> "cpu", `mx.gpu(1)` -> "gpu:1" (for records)."""
    return "cpu" if ctx.device_type == "cpu" else f"gpu:{ctx.device_id}"
