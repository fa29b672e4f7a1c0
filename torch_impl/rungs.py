"""The "why is the built-in faster" ladder in PyTorch: d2l's scratch LSTM language model, made
faster one change at a time up to `nn.LSTM` (common/rungs.py describes the rungs).

The `hand_vjp` rung adds a hand-written backward (recurrence.py), as JAX's fast path does; the
`packed` rung then runs its recurrent products through oneDNN on packed weights, the kernels
behind `nn.LSTM` on a CPU, instead of torch's MKL matmul.
Every rung holds the same canonical parameters (the middle rungs in the fused layout,
common.rungs.fuse_lstm) and trains them with the same head and step: one-hot inputs,
`Y W_hq + b_q`, mean cross-entropy, backward, d2l's clipping, `torch.optim.SGD`. Only the
recurrent layer differs, so a rung's speed is its layer's.

The compiled rung scripts the hoisted loop with TorchScript, not `torch.compile`: TorchScript
compiles in well under a second and needs no C++ toolchain, while inductor unrolls the 35 steps
and took about a minute on the 2-core development machine for no steady-state gain there.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from common.config import LMConfig
from common.errors import NotSupported
from common.params import Params, sub_params
from common.rungs import CANONICAL_RUNGS, canonical_grads, check_config, fuse_lstm, gate_width

from .arrays import to_numpy
from .cells import lstm_step
from .devices import TORCH_DTYPES, resolve_device
from .layers import builtin_code_path, fast_code_path, fast_forward, run_direction
from .lm import HEAD_KEYS, cross_entropy
from .model import Model, build_model
from .recurrence import hand_lstm, onednn_matmul_t, pack, packable
from .speed import make_sync
from .trainer import Trainer, make_optimizer

RUNGS = ("d2l", "fused", "hoisted", "compiled", "hand_vjp", "packed", "fast", "builtin")
# Profiler events that launch no kernel: views, allocation, metadata.
NO_KERNEL = {"aten::empty", "aten::empty_strided", "aten::view", "aten::t", "aten::transpose",
             "aten::select", "aten::slice", "aten::unbind", "aten::reshape", "aten::expand",
             "aten::as_strided", "aten::detach", "aten::alias", "aten::_reshape_alias",
             "aten::resolve_conj", "aten::resolve_neg", "aten::lift_fresh", "aten::unsqueeze",
             "aten::squeeze", "aten::permute", "aten::numpy_T", "aten::_unsafe_view",
             "aten::split", "aten::chunk", "aten::narrow", "aten::set_", "aten::result_type"}


def lstm_pointwise(gates: torch.Tensor, C: torch.Tensor):
    """d2l's LSTM from fused pre-activations `gates: (B, 4H)` (i, f, o, c) -> `(H', C')`."""
    n = C.shape[1]
    IFO = torch.sigmoid(gates[:, :3 * n])
    C = IFO[:, n:2 * n] * C + IFO[:, :n] * torch.tanh(gates[:, 3 * n:])
    return IFO[:, 2 * n:] * torch.tanh(C), C


def hoisted_loop(XP: torch.Tensor, W_h: torch.Tensor, H: torch.Tensor, C: torch.Tensor):
    """The recurrence once the inputs are projected: `XP: (T, B, 4H)` -> `(Y, H, C)`.

    `unbind`, not `XP[t]`: the backward of T indexings is T full-size `(T, B, 4H)` gradients
    summed (quadratic in T), that of one `unbind` a single stack.
    """
    outputs = []
    for xp in XP.unbind(0):
        H, C = lstm_pointwise(xp + H @ W_h, C)
        outputs.append(H)
    return torch.stack(outputs), H, C


@functools.lru_cache(maxsize=None)
def scripted_loop():
    """`hoisted_loop` compiled by TorchScript (once per process)."""
    return torch.jit.script(hoisted_loop)


def d2l_layer(model, X, H, C):
    """d2l's loop over the scratch cell (one matmul per gate and side)."""
    Y, (H, C) = run_direction(lstm_step, sub_params(model.params, "l0."), X, (H, C))
    return Y, H, C


def fused_layer(model, X, H, C):
    p, outputs = model.params, []
    for x in X:
        H, C = lstm_pointwise(x @ p["W_x"] + H @ p["W_h"] + p["b"], C)
        outputs.append(H)
    return torch.stack(outputs), H, C


def hoisted_layer(model, X, H, C, loop=hoisted_loop):
    p = model.params
    return loop(X @ p["W_x"] + p["b"], p["W_h"], H, C)


def compiled_layer(model, X, H, C):
    return hoisted_layer(model, X, H, C, loop=scripted_loop())


def hand_vjp_layer(model, X, H, C, packed=False):
    p = model.params
    return hand_lstm(X @ p["W_x"] + p["b"], p["W_h"], H, C, packed)


def packed_layer(model, X, H, C):
    return hand_vjp_layer(model, X, H, C, packed=True)


def fast_layer(model, X, H, C):
    """The suite's `fast` layer stack on the canonical parameters."""
    Y, [(H, C)] = fast_forward(model.cfg.layer_spec, model.params, X, [(H, C)])
    return Y, H, C


def builtin_layer(model, X, H, C):
    Y, (H, C) = model.module(X, (H[None], C[None]))
    return Y, H[0], C[0]


LAYERS = {"d2l": d2l_layer, "fused": fused_layer, "hoisted": hoisted_layer,
          "compiled": compiled_layer, "hand_vjp": hand_vjp_layer, "packed": packed_layer,
          "fast": fast_layer, "builtin": builtin_layer}
CODE_PATHS = {"d2l": "Python loop, torch ops, 8 matmuls per step",
              "fused": "Python loop, torch ops, 2 matmuls per step",
              "hoisted": "input matmul hoisted, Python loop, 1 matmul per step",
              "compiled": "input matmul hoisted, loop scripted by TorchScript",
              "hand_vjp": "input matmul hoisted, autograd.Function with hand-written backward, "
                          "both loops scripted by TorchScript",
              "packed": "as hand_vjp, recurrent products oneDNN inner products on weights "
                        "packed once per call (torch.ops.mkldnn)"}


def loss(model: Model, ids: torch.Tensor, targets: torch.Tensor):
    """`ids, targets: (B, T)` -> `(mean cross-entropy, the same, logits (B, T, V))`, zero
    state; `model.impl` names the rung."""
    X = F.one_hot(ids.T, model.cfg.vocab_size).to(model.dtype)  # d2l: (T, B, V)
    zeros = X.new_zeros((X.shape[1], model.cfg.hidden_size))
    Y, _, _ = LAYERS[model.impl](model, X, zeros, zeros)
    logits = (Y @ model.params["W_hq"] + model.params["b_q"]).transpose(0, 1)
    value = cross_entropy(logits, targets)
    return value, value, logits


def build(rung: str, cfg: LMConfig, params: Params, dtype: str = "float32",
          device: str = "cpu", steps: int = 35) -> Model:
    """Rung `rung` holding canonical LM `params` (NumPy) exactly; `steps` (T) is not needed
    here (MXNet's compiled rung is unrolled for it)."""
    check_config(cfg)
    if rung not in RUNGS:
        raise NotSupported(f"torch has no rung {rung!r}; it has {', '.join(RUNGS)}")
    tdtype, dev = TORCH_DTYPES[dtype], resolve_device(device)
    to_canonical = lambda named, convert: canonical_grads(rung, cfg, named, convert)
    if rung == "builtin":
        layer = {k: v for k, v in params.items() if k not in HEAD_KEYS}
        head = {k: v for k, v in params.items() if k in HEAD_KEYS}
        return build_model(cfg, rung, head, tdtype, dev,
                           builtin_code_path(cfg.layer_spec, tdtype, dev),
                           {"": (cfg.layer_spec, layer)}, to_canonical)
    model = build_model(cfg, rung, params if rung in CANONICAL_RUNGS else fuse_lstm(params),
                        tdtype, dev, CODE_PATHS.get(rung, ""), to_canonical=to_canonical)
    if rung == "fast":
        model.code_path = fast_code_path(cfg.layer_spec, tdtype, dev)
    if rung == "packed" and not packable(model.params["W_h"]):
        model.code_path = CODE_PATHS["hand_vjp"] + f" (oneDNN packs float32 on a CPU only: " \
                                                   f"{dtype} on {dev.type} runs the plain products)"
    return model


def products_step(cfg: LMConfig, batch: int, steps: int, dtype: str = "float32",
                  device: str = "cpu"):
    """The floor under every scratch rung (common.rungs.PRODUCTS) -> `(step, sync, kernels)`:
    one training step's products alone, through the packed rung's oneDNN kernels where
    `packable`, else `torch.matmul`."""
    tdtype, dev = TORCH_DTYPES[dtype], resolve_device(device)
    H, V, B, T = cfg.hidden_size, cfg.vocab_size, batch, steps
    Hg = gate_width(cfg.cell, H)      # the fused gates: 4H (LSTM), 3H (GRU), H (RNN)
    gen = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=gen, dtype=tdtype).to(dev)
    W_h, W_x, W_q = r(H, Hg), r(V, Hg), r(H, V)
    X, Y, G, dlogits = r(T * B, V), r(T * B, H), r(T * B, Hg), r(T * B, V)
    h, xp, dg = r(B, H), r(B, Hg), r(B, Hg)
    packed = packable(W_h)

    def step():
        if packed:
            W_f, W_b = pack(W_h.t(), B), pack(W_h, B)
            for _ in range(T):
                out = torch.ops.mkldnn._linear_pointwise(h, xp, W_f, None, "add")
            for _ in range(T):
                out = torch.ops.mkldnn._linear_pointwise(dg, W_b, None, "none", [], "")
            out = onednn_matmul_t(Y, G)
        else:
            for _ in range(T):
                out = torch.addmm(xp, h, W_h)
            for _ in range(T):
                out = dg @ W_h.t()
            out = Y.t() @ G
        return out, X @ W_x, X.t() @ G, Y @ W_q, dlogits @ W_q.t(), Y.t() @ dlogits

    kernels = ("oneDNN inner products on packed weights, torch.matmul for the input and output "
               "layers" if packed else "torch.matmul")
    return step, make_sync(dev), kernels


def loss_and_grads(model: Model, ids, targets):
    """`(loss, logits (B, T, V), canonical gradients)` as NumPy, for the parity checks."""
    leaves = model.leaves()
    for p in leaves.values():
        p.grad = None
    value, _, logits = loss(model, model.ids_in(ids), model.ids_in(targets))
    value.backward()
    grads = {k: to_numpy(p.grad) for k, p in leaves.items()}
    return float(value.detach()), to_numpy(logits), model.canonical(grads, grads=True)


def make_step(model: Model, ids, targets, lr: float, clip: float) -> Callable[[], object]:
    """d2l's training step on one batch (trainer.Trainer: forward, loss, backward, clipping,
    SGD) -> a function of no arguments returning the loss, unsynchronised."""
    ids, targets = model.ids_in(ids), model.ids_in(targets)
    trainer = Trainer(model, loss, make_optimizer(model, "sgd", lr), clip)
    return lambda: trainer.step_async(ids, targets)[0]


def sync(model: Model) -> Callable[[object], None]:
    """The barrier a timed step ends with: `torch.cuda.synchronize` on CUDA, else nothing."""
    return make_sync(model.device)


def count_ops(model: Model, step: Callable[[], object]):
    """Kernels one training step launches -> `(count, how it was counted)`.

    CUDA: the profiler's device kernels. CPU: the outermost ATen operators (an `aten::mm`
    called by `aten::matmul` is the same product), without views, allocations and metadata.
    """
    from torch.profiler import ProfilerActivity, profile
    cuda = model.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        sync(model)(step())
    events = prof.events()
    if cuda:
        count = sum(1 for e in events if e.device_type.name == "CUDA")
        return count, "torch.profiler CUDA kernels"
    count = sum(1 for e in events if _is_outer_aten(e))
    return count, "torch.profiler outermost ATen ops (no views, allocations)"


def _is_outer_aten(event) -> bool:
    if not event.name.startswith("aten::") or event.name in NO_KERNEL:
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def runtime_info(device: str = "cpu") -> dict:
    """Versions, device and threads as this process sees them, for the records."""
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"versions": {"torch": torch.__version__}, "device": name,
            "threads": torch.get_num_threads()}


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
