"""Speed steps in JAX: the LM training / inference step ready to time, GEMM probes, threads.

The same function names in `torch_impl/speed.py` and `mxnet_impl/speed.py`. JAX dispatches
asynchronously; every `Step.sync` is `jax.block_until_ready` on what the step returned (for
training the loss and the updated parameters). The step is the adapter's own model and trainer
(lm.py, trainer.py: `train_step` is one jitted function), not a copy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common.errors import NotSupported
from common.params import init_lm_params
from common.speedcase import SpeedCase, Step

from . import lm
from .adapter import BACKEND
from .devices import compute_scope, resolve_device
from .runtime import gpu_names, make_sync, pin_threads, threads_used, versions  # noqa: F401

GEMM_OPS = ("jnp.matmul",)
FRAMEWORK = "jax"
_matmul = jax.jit(jnp.matmul)


def _device_name(device):
    return device.device_kind if device.platform == "gpu" else None


def build_step(case: SpeedCase, ids: np.ndarray, targets: np.ndarray, seed: int = 0) -> Step:
    """The LM step of `case` on its device: `train` is `Trainer.step_async` (one jitted
    `train_step`: value_and_grad, d2l clipping, optax.sgd); `infer` the jitted forward."""
    device = resolve_device(case.device)
    cfg = case.lm_config()
    model = BACKEND.build_lm(cfg, init_lm_params(cfg, seed, case.dtype), case.dtype,
                             case.device)
    with model.scope():
        ids_j, targets_j = model.ids_in(ids, cfg.vocab_size), model.ids_in(targets, cfg.vocab_size)
    if case.mode == "train":
        trainer = BACKEND.make_trainer(model, "sgd", 1.0, 1.0)
        fn = lambda: (trainer.step_async(ids_j, targets_j)[0], model.params)
        path = "train step (value_and_grad, clipping, optax.sgd) in one jit"
    else:
        def fn():
            with model.scope():
                return lm.forward(model, ids_j)[0]
        path = "jitted forward"
    return Step(fn, make_sync(device), f"{model.code_path}; {path}", _device_name(device))


def gemm_step(op: str, M: int, K: int, N: int, device: str = "cpu", dtype: str = "float32") -> Step:
    """One `(M, K) x (K, N)` product with a jitted `jnp.matmul` on `device` (full fp32 on GPU)."""
    if op not in GEMM_OPS:
        raise NotSupported(f"jax has no GEMM op {op!r} here; it has {', '.join(GEMM_OPS)}")
    dev = resolve_device(device)
    rng = np.random.default_rng(0)
    with compute_scope(dev, dtype):
        a = jnp.asarray(rng.normal(size=(M, K)), dtype=dtype)
        b = jnp.asarray(rng.normal(size=(K, N)), dtype=dtype)

    def fn():
        with compute_scope(dev, dtype):
            return _matmul(a, b)
    return Step(fn, make_sync(dev), op, _device_name(dev))


def bare_loop(case: SpeedCase, ids: np.ndarray, targets: np.ndarray, n_steps: int) -> float:
    """The hand-written comparison loop exists for PyTorch only (torch_impl/speed.py)."""
    raise NotSupported("the bare-loop comparison is written for PyTorch only")
