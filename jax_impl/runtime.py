"""What the JAX runtime is: versions, devices, threads, the barrier that ends timed work.

The same function names in `torch_impl/runtime.py` and `mxnet_impl/runtime.py`; `info()` has
the schema `common.backend.INFO_KEYS` in all three (JAX's own settings under `details`).
"""
from __future__ import annotations

import os

import jax

from common.cpus import cpu_count

from .devices import device_names

THREAD_VARS = ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_CPP_MIN_LOG_LEVEL", "JAX_PLATFORMS", "JAX_ENABLE_X64")


def versions() -> dict:
    """Versions of the modules actually imported (not just what pip metadata says)."""
    import flax
    import jaxlib
    import optax
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__}


def gpu_names() -> list:
    try:
        return [d.device_kind for d in jax.devices("gpu")]
    except RuntimeError:  # no GPU platform
        return []


def threads_used() -> dict:
    out = {"cpu_affinity": cpu_count()}
    if "XLA_FLAGS" in os.environ:
        out["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    return out


def pin_threads(threads: int) -> None:
    """XLA's CPU thread pool has no size setting: it follows the process's CPU affinity, which
    the speed worker sets before JAX starts (with `--xla_cpu_multi_thread_eigen=false` for one
    thread). Nothing to do here."""


def make_sync(device):
    """The barrier that ends a timed region: wait for every array the step returned."""
    return jax.block_until_ready


def default_device() -> str:
    return jax.default_backend()


def info() -> dict:
    """Versions, devices, threads, JAX's defaults (JSON-able)."""
    threads = {"cpu_count": os.cpu_count(),
               **{k: os.environ[k] for k in THREAD_VARS if k in os.environ}}
    details = {"default_backend": jax.default_backend(),
               "x64_default": bool(jax.config.read("jax_enable_x64"))}
    return {"framework": "jax", "versions": versions(), "devices": device_names(),
            "threads": threads, "default_device": default_device(), "details": details}
