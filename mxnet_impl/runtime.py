"""What the MXNet runtime is: versions, build features, devices, threads, the barrier that ends
timed work.

The same function names in `torch_impl/runtime.py` and `jax_impl/runtime.py`; `info()` has the
schema `common.backend.INFO_KEYS` in all three (MXNet's own settings under `details`).
"""
import os
import shutil
import subprocess

import numpy as np

from ._mx import mx
from .devices import device_name

FEATURES = ("MKLDNN", "ONEDNN", "CUDA", "CUDNN", "NCCL", "OPENMP", "BLAS_OPEN", "BLAS_MKL",
            "BLAS_ATLAS", "LAPACK")
nd = mx.nd


def versions() -> dict:
    return {"mxnet": mx.__version__}


def enabled_features():
    """The `mx.runtime.Features()` flags that decide which kernels run."""
    features = mx.runtime.Features()
    return {name: features.is_enabled(name) for name in FEATURES if name in features}


def openmp_counts():
    """OpenMP as libmxnet sees it: processors, and max threads of the calling (Python) thread.

    MXNet's operators run on its engine's worker threads, which size their OpenMP teams from
    OMP_NUM_THREADS or the processor count; importing MXNet can leave the Python thread at 1.
    """
    lib = mx.base._LIB
    if not hasattr(lib, "omp_get_max_threads"):  # a build linked without its own OpenMP
        return {}
    return {"omp_num_procs": lib.omp_get_num_procs(),
            "omp_max_threads_python_thread": lib.omp_get_max_threads()}


def num_gpus() -> int:
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:  # a CUDA build without a usable driver raises here
        return 0


def gpu_names() -> list:
    """MXNet exposes no device names; `nvidia-smi` gives them when present."""
    count = num_gpus()
    if not count:
        return []
    names = []
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True)
        names = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
    return [names[i] if i < len(names) else f"gpu:{i}" for i in range(count)]


def threads_used() -> dict:
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")
           if k in os.environ}
    return {**env, **openmp_counts()}


def pin_threads(threads: int) -> None:
    """MXNet sizes its OpenMP teams from OMP_NUM_THREADS when libmxnet loads, so the speed worker
    sets it before the import; this only checks that it did."""
    if os.environ.get("OMP_NUM_THREADS") != str(threads):
        raise RuntimeError(f"OMP_NUM_THREADS must be {threads} before MXNet is imported, "
                           f"found {os.environ.get('OMP_NUM_THREADS')!r}")


def make_sync(device):
    """The barrier that ends a timed region: every pending operation of the engine."""
    return lambda _result=None: nd.waitall()


def default_device() -> str:
    return device_name(mx.context.current_context())


def info() -> dict:
    """MXNet version, build features, GPUs seen, thread settings (JSON-able)."""
    gpus, openmp = num_gpus(), openmp_counts()
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith("MXNET_") or k in ("OMP_NUM_THREADS", "NVIDIA_TF32_OVERRIDE")}
    details = {"backend": "mxnet", "mxnet": mx.__version__, "numpy": np.__version__,
               "features": enabled_features(), "num_gpus": gpus, "cpu_count": os.cpu_count(),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), **openmp,
               "env": env, "scratch_matmul": "nd.dot (bundled OpenBLAS)"}
    return {"framework": "mxnet", "versions": {**versions(), "numpy": np.__version__},
            "devices": ["cpu", *(f"gpu:{i}" for i in range(gpus))],
            "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), **openmp},
            "default_device": default_device(), "details": details}
