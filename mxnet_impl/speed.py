"""Speed steps in MXNet Gluon: the LM training / inference step ready to time, GEMM probes, threads.

The same function names in `torch_impl/speed.py` and `jax_impl/speed.py`. MXNet's engine runs
operators asynchronously on its own worker threads; every `Step.sync` is `mx.nd.waitall()`, which
waits for all of them (CPU or GPU). The step is the adapter's own model and trainer (lm.py,
trainer.py), not a copy.
"""
from __future__ import annotations

import numpy as np

from common.errors import NotSupported
from common.params import init_lm_params
from common.speedcase import SpeedCase, Step

from . import lm
from ._mx import mx
from .adapter import BACKEND
from .arrays import from_numpy
from .devices import resolve_device
from .runtime import gpu_names, make_sync, pin_threads, threads_used, versions  # noqa: F401

nd = mx.nd
# nd.dot goes to the OpenBLAS bundled with MXNet 1.9.1; FullyConnected to oneDNN
# (docs/performance.md)
GEMM_OPS = ("nd.dot", "nd.FullyConnected")
FRAMEWORK = "mxnet"


def _device_name(ctx):
    if ctx.device_type != "gpu":
        return None
    names = gpu_names()
    return names[ctx.device_id] if ctx.device_id < len(names) else f"gpu:{ctx.device_id}"


def build_step(case: SpeedCase, ids: np.ndarray, targets: np.ndarray, seed: int = 0) -> Step:
    """The LM step of `case` on its device: `train` is `Trainer.step_async` (forward under
    `autograd.record`, cross-entropy, backward, clipping, Gluon's SGD); `infer` the forward."""
    ctx = resolve_device(case.device)
    cfg = case.lm_config()
    model = BACKEND.build_lm(cfg, init_lm_params(cfg, seed, case.dtype), case.dtype,
                             case.device)
    ids_nd, targets_nd = model.ids_in(ids), model.ids_in(targets)
    if case.mode == "train":
        trainer = BACKEND.make_trainer(model, "sgd", 1.0, 1.0)
        fn = lambda: trainer.step_async(ids_nd, targets_nd)[0]
        path = "autograd.record, d2l clipping, gluon.Trainer sgd"
    else:
        fn = lambda: lm.forward(model, ids_nd)[0]
        path = "forward, not recording"
    return Step(fn, make_sync(ctx), f"{model.code_path}; {path}", _device_name(ctx))


def gemm_step(op: str, M: int, K: int, N: int, device: str = "cpu", dtype: str = "float32") -> Step:
    """One `(M, K) x (K, N)` product with MXNet's `nd.dot` or `nd.FullyConnected` on `device`."""
    if op not in GEMM_OPS:
        raise NotSupported(f"mxnet has no GEMM op {op!r} here; it has {', '.join(GEMM_OPS)}")
    ctx = resolve_device(device)
    rng = np.random.default_rng(0)
    a = from_numpy(rng.normal(size=(M, K)), dtype, ctx)
    if op == "nd.dot":
        b = from_numpy(rng.normal(size=(K, N)), dtype, ctx)
        fn = lambda: nd.dot(a, b)
    else:
        w = from_numpy(rng.normal(size=(N, K)), dtype, ctx)  # FullyConnected: x W^T
        fn = lambda: nd.FullyConnected(a, w, no_bias=True, num_hidden=N)
    return Step(fn, make_sync(ctx), op, _device_name(ctx))


def bare_loop(case: SpeedCase, ids: np.ndarray, targets: np.ndarray, n_steps: int) -> float:
    """The hand-written comparison loop exists for PyTorch only (torch_impl/speed.py)."""
    raise NotSupported("the bare-loop comparison is written for PyTorch only")
