"""The GRU encoder-decoder (d2l 1.0's `Seq2Seq`) in PyTorch: pure functions over explicit
parameters (common/seq2seq.py has the canonical keys).

src `(B, Ts)` -> embedding -> GRU stack -> final states `[(B, H)] * L`; dec_in `(B, T)` ->
embedding, concatenated with the context (the last layer's final state) at every step -> GRU
stack started from those states -> `Y @ W_hq + b_q` -> logits `(B, T, Vt)`. Each stack runs one
layer at a time (scratch driver or a one-layer `nn.GRU`, from layers.py) with dropout between
layers while training, as `nn.GRU(dropout=p)` places it. The loss is d2l's masked mean
cross-entropy over the non-padding labels.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from common.params import Params, cast_params, duplicate_bias_masks
from common.seq2seq import (HEAD_KEYS, SIDES, DropoutDraws, Seq2SeqConfig,
                            check_seq2seq_params, label_mask, layer_params, seq2seq_canonical,
                            truncate_at_eos)

from .arrays import to_numpy
from .convert import NATIVE_GATES
from .devices import TORCH_DTYPES, resolve_device
from .layers import SCRATCH_CODE_PATH, builtin_code_path, builtin_forward, scratch_forward
from .model import Model, build_model
from .trainer import Trainer, make_optimizer


def run_stack(model: Model, side: str, X, states=None, drops=None):
    """`X: (T, B, I)`, states `[(B, H)] * L` or None (zeros) -> `(Y: (T, B, H), finals)`;
    `drops`: common.seq2seq.dropout_scales of this step as tensors (None: no dropout)."""
    finals = []
    for k in range(model.cfg.num_layers):
        X = X * drops[f"{side}.l{k}"] if (k and drops) else X
        spec, state = model.cfg.layer_spec(side, k), None if states is None else [states[k]]
        if model.modules:
            X, final = builtin_forward(spec, model.modules[f"{side}.l{k}"], X, state)
        else:
            X, final = scratch_forward(spec, layer_params(model.params, side, k), X, state)
        finals.append(final[0])
    return X, finals


def encode(model: Model, src, drops=None):
    """`src: (B, Ts)` long tensor -> the encoder's final states `[(B, H)] * L`."""
    X = F.embedding(src.T, model.params["encoder.embedding"])
    return run_stack(model, "encoder", X, None, drops)[1]


def decode(model: Model, dec_in, context, states, drops=None):
    """`dec_in: (B, T)`, context `(B, H)`, states `[(B, H)] * L` ->
    `(logits: (B, T, Vt), states)`."""
    emb = F.embedding(dec_in.T, model.params["decoder.embedding"])
    X = torch.cat([emb, context.expand(emb.shape[0], -1, -1)], dim=-1)
    Y, states = run_stack(model, "decoder", X, states, drops)
    logits = Y @ model.params["decoder.W_hq"] + model.params["decoder.b_q"]
    return logits.transpose(0, 1), states


def logits_of(model: Model, src, dec_in, drops=None):
    """Teacher-forced logits `(B, T, Vt)` of tensors `src: (B, Ts)`, `dec_in: (B, T)`."""
    finals = encode(model, src, drops)
    return decode(model, dec_in, finals[-1], finals, drops)[0]


def masked_loss(logits, label, mask):
    """d2l 1.0: `sum(nll * mask) / sum(mask)`; logits `(B, T, V)`, label and mask `(B, T)`."""
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), label.reshape(-1),
                          reduction="none")
    return (nll * mask.reshape(-1)).sum() / mask.sum()


def build_seq2seq(cfg: Seq2SeqConfig, params: Params, dtype: str = "float32",
                  device: str = "cpu") -> Model:
    """A model holding canonical `params` (NumPy) exactly; NotSupported as `make_builtin`."""
    check_seq2seq_params(cfg, params)
    params, dev, tdtype = cast_params(params, dtype), resolve_device(device), TORCH_DTYPES[dtype]
    if cfg.impl == "scratch":
        return build_model(cfg, cfg.impl, params, tdtype, dev, SCRATCH_CODE_PATH)
    builtins = {f"{side}.l{k}": (cfg.layer_spec(side, k), layer_params(params, side, k))
                for side in SIDES for k in range(cfg.num_layers)}
    head = {k: v for k, v in params.items() if k in HEAD_KEYS}
    path = builtin_code_path(cfg.layer_spec("encoder", 0), tdtype, dev)
    return build_model(cfg, cfg.impl, head, tdtype, dev, f"one-layer {path}, per layer",
                       builtins, lambda named, convert: seq2seq_canonical(cfg, named, convert))


def forward(model: Model, src, dec_in) -> np.ndarray:
    """Teacher-forced logits `(B, T, Vt)` (NumPy), no dropout; `src: (B, Ts)`, `dec_in: (B, T)`."""
    cfg = model.cfg
    with torch.no_grad():
        logits = logits_of(model, model.ids_in(src, cfg.src_vocab_size, "source"),
                           model.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input"))
    return np.ascontiguousarray(to_numpy(logits))


def loss(model: Model, src, dec_in, label, label_valid_len, drops=None):
    """The masked loss of one batch (dropout scales `drops` as NumPy, None: no dropout), as the
    trainer wants it: `(loss, loss, None)`."""
    cfg = model.cfg
    label = np.asarray(label)
    drops = None if drops is None else {k: model.array(v) for k, v in drops.items()}
    logits = logits_of(model, model.ids_in(src, cfg.src_vocab_size, "source"),
                       model.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input"), drops)
    mask = model.array(label_mask(label_valid_len, label.shape[1]))
    value = masked_loss(logits, model.ids_in(label, cfg.tgt_vocab_size, "label"), mask)
    return value, value, None


def loss_grads(model: Model, src, dec_in, label, label_valid_len):
    """`(masked loss, canonical gradients)` (NumPy), no dropout; label `(B, T)`, lengths `(B,)`."""
    leaves = model.leaves()
    with torch.enable_grad():
        value, _, _ = loss(model, src, dec_in, label, label_valid_len)
    grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True,
                                materialize_grads=True)
    return value.item(), model.canonical({k: to_numpy(g) for k, g in zip(leaves, grads)},
                                         grads=True)


def bias_masks(model: Model) -> Dict[str, np.ndarray]:
    """`common.params.duplicate_bias_masks` of each built-in's `bias_hh_l0` (see trainer.py for
    why), NumPy (the trainer casts them); empty for scratch."""
    names = [f"{name}.bias_hh_l0" for name in model.modules]
    return duplicate_bias_masks(model.cfg.layer_spec("encoder", 0), names, NATIVE_GATES["gru"])


def make_trainer(model: Model, lr: float = 0.005, clip: Optional[float] = 1.0,
                 dropout: float = 0.0, seed: int = 0) -> Trainer:
    """Adam on every parameter, d2l's global-norm clipping (`clip=None`: none), inter-layer
    dropout with masks drawn in NumPy (common.seq2seq.DropoutDraws, the same in every
    framework): `step(src, dec_in, label, label_valid_len) -> (loss, None)`."""
    draws = DropoutDraws(model.cfg, dropout, seed)

    def dropped_loss(model, src, dec_in, label, label_valid_len):
        return loss(model, src, dec_in, label, label_valid_len, draws.next(src, dec_in))
    return Trainer(model, dropped_loss, make_optimizer(model, "adam", lr), clip, bias_masks(model))


def greedy(model: Model, src, bos: int, eos: int, num_steps: int):
    """Greedy decoding, each row stopping at its first `<eos>`: `src: (B, Ts)` ->
    `(ids: (B, num_steps), lengths: (B,))` int64 NumPy; `ids[i, lengths[i]:]` are `eos`."""
    src = model.ids_in(src, model.cfg.src_vocab_size, "source")
    out = []
    with torch.no_grad():
        finals = encode(model, src)
        token, states = torch.full((src.shape[0], 1), bos, device=model.device), finals
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=model.device)
        for _ in range(num_steps):
            logits, states = decode(model, token, finals[-1], states)
            token = logits.argmax(-1)
            out.append(token[:, 0])
            done |= token[:, 0] == eos
            if bool(done.all()):  # one host sync per step; decoding is not timed
                break
    tokens = torch.stack(out, 1).cpu().numpy()
    tokens = np.pad(tokens, ((0, 0), (0, num_steps - tokens.shape[1])), constant_values=eos)
    return truncate_at_eos(tokens, eos)
