"""Speed steps in PyTorch: the LM training / inference step ready to time, GEMM probes, threads.

The same function names in `mxnet_impl/speed.py` and `jax_impl/speed.py`. Every function
returns a `common.speedcase.Step` whose `sync` is the framework's barrier for the device asked
(`torch.cuda.synchronize` on CUDA; nothing to wait for on the CPU, where torch ops return
finished). The step is the adapter's own model and trainer (lm.py, trainer.py), not a copy.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NotSupported
from common.params import init_lm_params
from common.speedcase import SpeedCase, Step

from . import lm
from .adapter import BACKEND
from .devices import TORCH_DTYPES, resolve_device
from .runtime import gpu_names, make_sync, pin_threads, threads_used, versions  # noqa: F401

GEMM_OPS = ("torch.matmul",)
FRAMEWORK = "torch"


def _device_name(device: torch.device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def build_step(case: SpeedCase, ids: np.ndarray, targets: np.ndarray, seed: int = 0) -> Step:
    """The LM step of `case` on its device: `train` is `Trainer.step_async` (forward,
    cross-entropy, backward, clipping, SGD); `infer` is the forward under `torch.no_grad`."""
    device = resolve_device(case.device)
    cfg = case.lm_config()
    model = BACKEND.build_lm(cfg, init_lm_params(cfg, seed, case.dtype), case.dtype,
                             case.device)
    ids_t, targets_t = model.ids_in(ids), model.ids_in(targets)
    if case.mode == "train":
        trainer = BACKEND.make_trainer(model, "sgd", 1.0, 1.0)
        fn = lambda: trainer.step_async(ids_t, targets_t)[0]
        path = "eager autograd, d2l clipping, torch.optim.SGD"
    else:
        def fn():
            with torch.no_grad():
                return lm.forward(model, ids_t)[0]
        path = "eager, torch.no_grad"
    return Step(fn, make_sync(device), f"{model.code_path}; {path}", _device_name(device))


def gemm_step(op: str, M: int, K: int, N: int, device: str = "cpu", dtype: str = "float32") -> Step:
    """One `(M, K) x (K, N)` product with torch's own matmul, on `device`."""
    if op not in GEMM_OPS:
        raise NotSupported(f"torch has no GEMM op {op!r}; it has {', '.join(GEMM_OPS)}")
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=gen, dtype=TORCH_DTYPES[dtype]).to(dev)
    b = torch.randn(K, N, generator=gen, dtype=TORCH_DTYPES[dtype]).to(dev)
    return Step(lambda: a @ b, make_sync(dev), op, _device_name(dev))


def bare_loop(case: SpeedCase, ids: np.ndarray, targets: np.ndarray, n_steps: int) -> float:
    """Seconds per step of a plain hand-written PyTorch loop, no harness: the built-in
    `nn.RNN/LSTM/GRU` and an `nn.Linear` over one-hot inputs, `F.cross_entropy`, backward,
    `clip_grad_norm_` and `torch.optim.SGD` (train), or the forward under `no_grad` (infer);
    `time.perf_counter` around `n_steps` steps and one synchronisation at the end."""
    if case.impl != "builtin":
        raise NotSupported("the bare loop is written with the built-in layer only")
    device, dtype = resolve_device(case.device), TORCH_DTYPES[case.dtype]
    torch.manual_seed(0)
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[case.cell](
        case.vocab, case.hidden, dtype=dtype, device=device)
    head = nn.Linear(case.hidden, case.vocab, dtype=dtype, device=device)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=1.0)
    X = torch.as_tensor(ids, device=device)
    Y = torch.as_tensor(targets, device=device)

    def train():
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(F.one_hot(X.T, case.vocab).to(dtype))
        loss = F.cross_entropy(head(out).transpose(0, 1).reshape(-1, case.vocab), Y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    def infer():
        with torch.no_grad():
            out, _ = rnn(F.one_hot(X.T, case.vocab).to(dtype))
            head(out)

    step, sync = (train if case.mode == "train" else infer), make_sync(device)
    for _ in range(3):  # first calls (allocation, kernel choice) off the clock, as in the harness
        step()
    sync()
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    sync()
    return (time.perf_counter() - start) / n_steps
