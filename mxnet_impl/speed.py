"""Speed steps in MXNet Gluon: the LM training / inference step ready to time, GEMM probes, threads.

The same function names in `torch_impl/speed.py` and `jax_impl/speed.py`. MXNet's engine runs
operators asynchronously on its own worker threads; every `Step.sync` is `mx.nd.waitall()`, which
waits for all of them (CPU or GPU). The step is the adapter's own model and trainer (lm.py,
train.py), not a copy.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from common.errors import NotSupported
from common.params import init_lm_params
from common.speedcase import SpeedCase, Step

from ._mx import mx
from .adapter import BACKEND, openmp_counts
from .devices import resolve_device
from .arrays import from_numpy

nd = mx.nd
# nd.dot goes to the OpenBLAS bundled with MXNet 1.9.1; FullyConnected to oneDNN
# (docs/performance.md)
GEMM_OPS = ("nd.dot", "nd.FullyConnected")
FRAMEWORK = "mxnet"


def pin_threads(threads: int) -> None:
    """MXNet sizes its OpenMP teams from OMP_NUM_THREADS when libmxnet loads, so the speed worker
    sets it before the import; this only checks that it did."""
    if os.environ.get("OMP_NUM_THREADS") != str(threads):
        raise RuntimeError(f"OMP_NUM_THREADS must be {threads} before MXNet is imported, "
                           f"found {os.environ.get('OMP_NUM_THREADS')!r}")


def threads_used() -> dict:
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")
           if k in os.environ}
    return {**env, **openmp_counts()}


def versions() -> dict:
    return {"mxnet": mx.__version__}


def _num_gpus() -> int:
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:  # a CUDA build without a usable driver raises here
        return 0


def gpu_names() -> list:
    """MXNet exposes no device names; `nvidia-smi` gives them when present."""
    count = _num_gpus()
    if not count:
        return []
    names = []
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True)
        names = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
    return [names[i] if i < len(names) else f"gpu:{i}" for i in range(count)]


def make_sync(ctx):
    """The barrier that ends a timed region: every pending operation of the engine."""
    return lambda _result=None: nd.waitall()


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
        fn = lambda: model.forward(ids_nd)[0]
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
