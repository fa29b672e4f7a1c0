"""Canonical parameters (docs/contract.md): key sets, shapes, seeded initialisation (files are read
and written by `common.checkpoint`).

Weights are stored so that the math reads `X @ W`: shape `(in, out)`.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .checkpoint import load_params, save_params  # noqa: F401  (the file format lives there)
from .config import LayerSpec

Params = Dict[str, np.ndarray]

# Gate names per cell, in the order the contract lists them. Each gate g has
# W_x{g} (I, H), W_h{g} (H, H) and b_{g} (H); GRU adds b_hn (H).
CELL_GATES = {
    "rnn": ("h",),
    "lstm": ("i", "f", "o", "c"),
    "gru": ("z", "r", "h"),
}


def cell_keys(cell: str) -> List[str]:
    """Keys of one (layer, direction), without the prefix, in contract order."""
    keys = []
    for g in CELL_GATES[cell]:
        keys += [f"W_x{g}", f"W_h{g}", f"b_{g}"]
    if cell == "gru":
        keys.append("b_hn")
    return keys


def prefixes(spec: LayerSpec) -> List[str]:
    """Prefixes in the contract's state order: `l0.`, `l0_rev.`, `l1.`, ..."""
    out = []
    for k in range(spec.num_layers):
        out.append(f"l{k}.")
        if spec.bidirectional:
            out.append(f"l{k}_rev.")
    return out


def redundant_bias_keys(spec: LayerSpec) -> List[str]:
    """Canonical biases that only duplicate another bias of the same pre-activation: in the
    `reset_before` GRU (d2l's scratch GRU), `b_hn` is added beside `b_h` outside the reset gate.

    d2l's GRU has the one bias `b_h` there; training both would move their sum twice as far per
    SGD step. The trainers zero these keys' gradients, so they keep their initial values and the
    model trains as d2l's does. (In `reset_after` `b_hn` sits inside `R * (...)` and trains.)
    """
    if spec.cell != "gru" or spec.gru_variant != "reset_before":
        return []
    return [p + "b_hn" for p in prefixes(spec)]


def duplicate_bias_masks(spec: LayerSpec, names=None, gates=()) -> Dict[str, np.ndarray]:
    """Gradient masks for the biases a trainer holds still (NumPy; each framework casts them).

    A built-in's recurrent-side biases `names` (its native names, gate blocks in `gates` order)
    duplicate a canonical bias: 0 on those blocks, 1 on GRU's candidate block (`b_hn`, which
    trains). `names=None` (canonical parameters): 0 on `redundant_bias_keys`, none otherwise.
    """
    H = spec.hidden_size
    if names is None:
        return {k: np.zeros(H) for k in redundant_bias_keys(spec)}
    mask = np.concatenate([np.full(H, 1.0 if (spec.cell == "gru" and g == "h") else 0.0)
                           for g in gates]) if names else None
    return {name: mask for name in names}


def layer_input_size(spec: LayerSpec, layer: int) -> int:
    """Input width of layer `layer`: the data for layer 0, H*D above it."""
    return spec.input_size if layer == 0 else spec.hidden_size * spec.num_directions


def param_shapes(spec: LayerSpec) -> Dict[str, Tuple[int, ...]]:
    """Every canonical key of the layer stack with its shape."""
    H = spec.hidden_size
    shapes = {}
    for p in prefixes(spec):
        layer = int(p[1:].split(".")[0].split("_")[0])
        inputs = layer_input_size(spec, layer)
        for key in cell_keys(spec.cell):
            if key.startswith("W_x"):
                shapes[p + key] = (inputs, H)
            elif key.startswith("W_h"):
                shapes[p + key] = (H, H)
            else:
                shapes[p + key] = (H,)
    return shapes


def init_params(spec: LayerSpec, seed: int = 0, dtype="float64", init: str = "uniform",
                scale: float = None, zero_bias: bool = False) -> Params:
    """Seeded canonical parameters.

    `init="uniform"`: U(-s, s) with s = 1/sqrt(H) (PyTorch's and Gluon's built-in default);
    `init="normal"`: N(0, s^2) with s = 0.01 (d2l's scratch code). Biases are drawn too unless
    `zero_bias`, so that the bias mapping between layouts is exercised.
    """
    rng = np.random.default_rng(seed)
    shapes = param_shapes(spec)
    if init == "uniform":
        s = scale if scale is not None else 1.0 / np.sqrt(spec.hidden_size)
        draw = lambda shape: rng.uniform(-s, s, size=shape)
    elif init == "normal":
        s = scale if scale is not None else 0.01
        draw = lambda shape: rng.normal(0.0, s, size=shape)
    else:
        raise ValueError(f"unknown init {init!r}: choose 'uniform' or 'normal'")
    out = {}
    for key, shape in shapes.items():
        is_bias = len(shape) == 1
        out[key] = np.zeros(shape) if (is_bias and zero_bias) else draw(shape)
        out[key] = out[key].astype(dtype)
    return out


def check_params(params: Params, expected: Dict[str, Tuple[int, ...]]) -> None:
    """Raise a ValueError naming missing, unexpected or mis-shaped keys."""
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    bad = sorted(k for k in expected if k in params and tuple(np.shape(params[k])) != expected[k])
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        if bad:
            parts.append("wrong shape " + ", ".join(
                f"{k}: {tuple(np.shape(params[k]))} != {expected[k]}" for k in bad))
        raise ValueError("canonical parameters do not fit: " + "; ".join(parts))


def numpy_dtype(dtype) -> str:
    """The NumPy dtype that carries `dtype` across the boundary (bfloat16, which NumPy lacks,
    travels as float32 and the framework rounds it)."""
    return "float32" if str(dtype) == "bfloat16" else dtype


def cast_params(params: Params, dtype) -> Params:
    return {k: np.asarray(v, dtype=numpy_dtype(dtype)) for k, v in params.items()}


def sub_params(params: Params, prefix: str) -> Params:
    """The entries under `prefix`, with the prefix stripped (`encoder.l0.W_xh` -> `l0.W_xh`)."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


LM_HEAD_KEYS = ("embedding", "W_hq", "b_q")  # a language model's keys outside the layer stack


def lm_canonical(layer_spec: LayerSpec, named: Params, read) -> Params:
    """A language model's arrays, its layer stack by a built-in's native names -> canonical
    names: the stack through `read` (the framework's `from_native`, or `grads_from_native` for
    gradients), the head (`LM_HEAD_KEYS`) as it is."""
    head = {k: v for k, v in named.items() if k in LM_HEAD_KEYS}
    native = {k: v for k, v in named.items() if k not in LM_HEAD_KEYS}
    return {**read(layer_spec, native), **head}


def lm_param_shapes(cfg) -> Dict[str, Tuple[int, ...]]:
    """Canonical keys of a language model (`common.config.LMConfig`): the layer stack, the
    optional `embedding (V, E)`, and the output layer `W_hq (H, V)`, `b_q (V)`."""
    shapes = param_shapes(cfg.layer_spec)
    if cfg.embed_size is not None:
        shapes["embedding"] = (cfg.vocab_size, cfg.embed_size)
    shapes["W_hq"] = (cfg.hidden_size, cfg.vocab_size)
    shapes["b_q"] = (cfg.vocab_size,)
    return shapes


def init_lm_params(cfg, seed: int = 0, dtype="float32", init: str = "normal",
                   scale: float = None, zero_bias: bool = None) -> Params:
    """Seeded LM parameters. Default: d2l's scratch init, N(0, 0.01^2) weights, zero biases.

    The embedding is drawn N(0, 1) as `torch.nn.Embedding` does.
    """
    zero_bias = (init == "normal") if zero_bias is None else zero_bias
    dtype = numpy_dtype(dtype)
    params = init_params(cfg.layer_spec, seed, dtype, init, scale, zero_bias)
    rng = np.random.default_rng([seed, 1])
    H, V = cfg.hidden_size, cfg.vocab_size
    s = scale if scale is not None else (0.01 if init == "normal" else 1.0 / np.sqrt(H))
    head = rng.normal(0, s, (H, V)) if init == "normal" else rng.uniform(-s, s, (H, V))
    params["W_hq"] = head.astype(dtype)
    params["b_q"] = (np.zeros(V) if zero_bias else rng.uniform(-s, s, V)).astype(dtype)
    if cfg.embed_size is not None:
        params["embedding"] = rng.normal(0, 1, (V, cfg.embed_size)).astype(dtype)
    return params
