"""The GRU encoder-decoder (d2l 1.0's `Seq2Seq`), framework-neutral: configuration, canonical
parameter shapes, seeded initialisation, and the NumPy helpers every backend shares.

Canonical keys (docs/contract.md, `encoder.` / `decoder.` prefixes), with Vs / Vt the source and
target vocabularies, E the embedding size, H the hidden size, L layers:
- `encoder.embedding (Vs, E)`; `encoder.l{k}.*`, GRU keys, layer 0 reads E, the others H;
- `decoder.embedding (Vt, E)`; `decoder.l{k}.*`, layer 0 reads E + H (the embedding, then the
  context: the encoder's last-layer final state, concatenated to every decoder input);
- `decoder.W_hq (H, Vt)`, `decoder.b_q (Vt)`: the output layer.
The decoder's GRU starts from the encoder's final states, layer by layer. Each stack runs one
layer at a time (`layer_spec`, `layer_params`), so that dropout can act between layers in every
framework and implementation alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .config import DTYPES, GRU_VARIANTS, LayerSpec, check_choice
from .params import Params, check_params, param_shapes, sub_params

SIDES = ("encoder", "decoder")
HEAD_KEYS = ("encoder.embedding", "decoder.embedding", "decoder.W_hq", "decoder.b_q")
INITS = ("xavier", "uniform")
# The encoder-decoder runs d2l's scratch layers or the built-ins; it has no fast stack.
SEQ2SEQ_IMPLS = ("scratch", "builtin")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """A GRU encoder-decoder; defaults are d2l 1.0's (embed 256, hidden 256, 2 layers)."""

    impl: str
    src_vocab_size: int
    tgt_vocab_size: int
    embed_size: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    gru_variant: str = "reset_after"

    def __post_init__(self):
        check_choice("impl", self.impl, SEQ2SEQ_IMPLS)
        check_choice("GRU variant", self.gru_variant, GRU_VARIANTS)
        for name in ("src_vocab_size", "tgt_vocab_size", "embed_size", "hidden_size",
                     "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")

    def spec(self, side: str) -> LayerSpec:
        """The whole stack of `side` ("encoder" or "decoder")."""
        check_choice("side", side, SIDES)
        inputs = self.embed_size + (self.hidden_size if side == "decoder" else 0)
        return LayerSpec("gru", inputs, self.hidden_size, self.num_layers, False, self.gru_variant)

    def layer_spec(self, side: str, k: int) -> LayerSpec:
        """Layer `k` of `side` alone, as a one-layer stack (its keys are `l0.*`)."""
        spec = self.spec(side)
        inputs = spec.input_size if k == 0 else self.hidden_size
        return LayerSpec("gru", inputs, self.hidden_size, 1, False, self.gru_variant)


@dataclass(frozen=True)
class TranslateConfig:
    """How a translation model is trained and decoded; defaults are d2l 1.0's settings."""

    lr: float = 0.005
    clip: float = 1.0
    epochs: int = 30
    batch_size: int = 128
    num_steps: int = 9
    num_train: int = 512
    num_val: int = 128
    dropout: float = 0.2
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    init: str = "xavier"

    def __post_init__(self):
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("init", self.init, INITS)
        for name in ("epochs", "batch_size", "num_steps", "num_train", "num_val"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be positive (or off), got {self.clip!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")


def seq2seq_param_shapes(cfg: Seq2SeqConfig) -> Dict[str, Tuple[int, ...]]:
    """Every canonical key of the model with its shape."""
    E, H = cfg.embed_size, cfg.hidden_size
    shapes = {"encoder.embedding": (cfg.src_vocab_size, E)}
    shapes.update({f"encoder.{k}": s for k, s in param_shapes(cfg.spec("encoder")).items()})
    shapes["decoder.embedding"] = (cfg.tgt_vocab_size, E)
    shapes.update({f"decoder.{k}": s for k, s in param_shapes(cfg.spec("decoder")).items()})
    shapes["decoder.W_hq"] = (H, cfg.tgt_vocab_size)
    shapes["decoder.b_q"] = (cfg.tgt_vocab_size,)
    return shapes


def _bound(key: str, shape, H: int) -> float:
    """The half-width of the uniform draw of d2l's init for one GRU or output-layer key.

    d2l applies `xavier_uniform_` to torch's stacked GRU matrices, `(3H, in)`: fan-out 3H.
    """
    if key.endswith("W_hq"):
        return float(np.sqrt(6.0 / (shape[0] + shape[1])))
    if ".W_" in key:
        return float(np.sqrt(6.0 / (shape[0] + 3 * H)))
    return 1.0 / np.sqrt(H)  # biases: torch's default U(±1/sqrt(H))


def init_seq2seq_params(cfg: Seq2SeqConfig, seed: int = 0, dtype="float32",
                        init: str = "xavier") -> Params:
    """Seeded canonical parameters; embeddings N(0, 1) as `nn.Embedding` draws them.

    `init="xavier"`: d2l 1.0's `init_seq2seq`, Xavier-uniform GRU and output weights (GRU
    weights with torch's stacked fan-out 3H), biases U(±1/sqrt(H)). `init="uniform"`: every
    GRU and output-layer entry U(±1/sqrt(H)), the built-ins' default.
    """
    check_choice("init", init, INITS)
    rng, H = np.random.default_rng(seed), cfg.hidden_size
    out = {}
    for key, shape in seq2seq_param_shapes(cfg).items():
        if key.endswith("embedding"):
            value = rng.normal(0.0, 1.0, shape)
        else:
            s = _bound(key, shape, H) if init == "xavier" else 1.0 / np.sqrt(H)
            value = rng.uniform(-s, s, shape)
        out[key] = value.astype(dtype)
    return out


def check_seq2seq_params(cfg: Seq2SeqConfig, params: Params) -> None:
    """Raise a ValueError naming missing, unexpected or mis-shaped keys."""
    check_params(params, seq2seq_param_shapes(cfg))


def layer_params(params: Params, side: str, k: int) -> Params:
    """Layer `k` of `side` renamed as a one-layer stack: `decoder.l1.W_xz` -> `l0.W_xz`."""
    prefix = f"{side}.l{k}."
    return {"l0." + key[len(prefix):]: v for key, v in params.items() if key.startswith(prefix)}


def from_layer_params(layer: Params, side: str, k: int) -> Params:
    """The inverse of `layer_params`: `l0.W_xz` -> `decoder.l1.W_xz`."""
    return {f"{side}.l{k}." + key[len("l0."):]: v for key, v in layer.items()}


def dropout_scales(cfg: "Seq2SeqConfig", src_shape, dec_shape, p: float, seed: int,
                   step: int, dtype="float32") -> Dict[str, np.ndarray]:
    """Inverted-dropout multipliers for the inputs of layers 1..L-1 of each side at training step
    `step`: `{"encoder.l1": (Ts, B, H), "decoder.l1": (T, B, H), ...}` of 0 and `1/(1-p)`, drawn
    in NumPy from (seed, step, side, layer), so every framework drops the same units and trains
    the same experiment. Empty when `p == 0` or there is one layer. Shapes: ids `(B, T)`."""
    out = {}
    if not p:
        return out
    for side, (B, T) in zip(SIDES, (src_shape, dec_shape)):
        for k in range(1, cfg.num_layers):
            rng = np.random.default_rng([seed, step, SIDES.index(side), k])
            keep = rng.random((T, B, cfg.hidden_size)) >= p
            out[f"{side}.l{k}"] = (keep / (1.0 - p)).astype(dtype)
    return out


class DropoutDraws:
    """A trainer's dropout: `next(src, dec_in)` gives the `dropout_scales` of the next training
    step (float64; the framework casts them), counting steps from 0."""

    def __init__(self, cfg: "Seq2SeqConfig", p: float, seed: int):
        self.cfg, self.p, self.seed, self.step = cfg, p, seed, 0

    def next(self, src, dec_in) -> Dict[str, np.ndarray]:
        out = dropout_scales(self.cfg, np.shape(src), np.shape(dec_in), self.p, self.seed,
                             self.step, "float64")
        self.step += 1
        return out


def seq2seq_canonical(cfg: "Seq2SeqConfig", named: Params, read) -> Params:
    """A built-in encoder-decoder's arrays (`{side}.l{k}.` + native names, and the head) ->
    canonical names, each layer through `read` (the framework's `from_native`, or
    `grads_from_native` for gradients)."""
    out = {k: named[k] for k in HEAD_KEYS}
    for side in SIDES:
        for k in range(cfg.num_layers):
            native = sub_params(named, f"{side}.l{k}.")
            out.update(from_layer_params(read(cfg.layer_spec(side, k), native), side, k))
    return out


def label_mask(label_valid_len, num_steps: int, dtype="float32") -> np.ndarray:
    """1 where a label counts, 0 on padding: `(B,)` valid lengths -> `(B, num_steps)`."""
    valid = np.asarray(label_valid_len).reshape(-1, 1)
    return (np.arange(num_steps)[None, :] < valid).astype(dtype)


def check_ids(ids, vocab_size: int, name: str) -> np.ndarray:
    """`ids` as int64, refusing ids outside [0, vocab_size) (JAX would clamp them silently)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} ids must lie in [0, {vocab_size}), "
                         f"got [{ids.min()}, {ids.max()}]")
    return ids


def truncate_at_eos(tokens, eos: int) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy outputs cut at each row's first `<eos>`: `tokens: (B, S)` ->
    `(ids: (B, S) int64, lengths: (B,) int64)`; `ids[i, lengths[i]:]` are all `eos`
    (a row that never emits `<eos>` keeps its S tokens)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    is_eos = tokens == eos
    lengths = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1), tokens.shape[1])
    ids = np.where(np.arange(tokens.shape[1])[None, :] < lengths[:, None], tokens, eos)
    return ids.astype(np.int64), lengths.astype(np.int64)
