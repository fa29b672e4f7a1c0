"""The GRU encoder-decoder (d2l 1.0's `Seq2Seq`) in MXNet: pure functions over explicit
parameters (common/seq2seq.py has the canonical keys).

src `(B, Ts)` -> embedding -> GRU stack -> final states `[(B, H)] * L`; dec_in `(B, T)` ->
embedding, concatenated with the context (the last layer's final state) at every step -> GRU
stack started from those states -> `Y @ W_hq + b_q` -> logits `(B, T, Vt)`. Each stack runs one
layer at a time (scratch driver or a one-layer hybridized `gluon.rnn.GRU`, from layers.py) with
dropout between layers while training, as `rnn.GRU(dropout=p)` places it. The loss is d2l's
masked mean cross-entropy over the non-padding labels.

One-layer fused layers also keep clear of MXNet 1.9.1's wrong layer-0 gradients in a fused
stack of 2+ layers (lm.py); every layer's input needs a gradient here anyway (embeddings).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from common.backend import refuse_reset_before
from common.errors import NotSupported
from common.params import Params, cast_params, duplicate_bias_masks
from common.seq2seq import (HEAD_KEYS, SIDES, DropoutDraws, Seq2SeqConfig,
                            check_seq2seq_params, label_mask, layer_params, seq2seq_canonical,
                            truncate_at_eos)

from ._mx import mx
from .adapter import mxnet_error_text
from .arrays import to_numpy
from .convert import NATIVE_GATES
from .devices import resolve_device
from .layers import (SCRATCH_CODE_PATH, builtin_code_path, builtin_forward, builtin_name,
                     scratch_forward)
from .lm import output_layer
from .model import Model, build_model
from .trainer import Trainer, make_optimizer

nd = mx.nd


def run_stack(model: Model, side: str, X, states=None, drops=None):
    """`X: (T, B, I)`, states `[(B, H)] * L` or None (zeros) -> `(Y: (T, B, H), finals)`;
    `drops`: common.seq2seq.dropout_scales of this step as nd arrays (None: no dropout)."""
    finals, arrays = [], None if model.modules else model.arrays()
    for k in range(model.cfg.num_layers):
        X = X * drops[f"{side}.l{k}"] if (k and drops) else X
        spec, state = model.cfg.layer_spec(side, k), None if states is None else [states[k]]
        if model.modules:
            X, final = builtin_forward(spec, model.modules[f"{side}.l{k}"], X, state)
        else:
            X, final = scratch_forward(spec, layer_params(arrays, side, k), X, state)
        finals.append(final[0])
    return X, finals


def _embed(table, ids):
    """`ids: (B, T)` -> `(T, B, E)` rows of `table: (V, E)`."""
    V, E = table.shape
    return nd.Embedding(ids.T, table, input_dim=V, output_dim=E, dtype=table.dtype)


def encode(model: Model, src, drops=None):
    """`src: (B, Ts)` int nd array -> the encoder's final states `[(B, H)] * L`."""
    X = _embed(model.params["encoder.embedding"].data(model.device), src)
    return run_stack(model, "encoder", X, None, drops)[1]


def decode(model: Model, dec_in, context, states, drops=None):
    """`dec_in: (B, T)`, context `(B, H)`, states `[(B, H)] * L` ->
    `(logits: (B, T, Vt), states)`."""
    arrays = model.arrays()
    emb = _embed(arrays["decoder.embedding"], dec_in)
    ctx = nd.broadcast_to(context.expand_dims(0), shape=(emb.shape[0],) + context.shape)
    Y, states = run_stack(model, "decoder", nd.concat(emb, ctx, dim=2), states, drops)
    head = {"W_hq": arrays["decoder.W_hq"], "b_q": arrays["decoder.b_q"]}
    return nd.swapaxes(output_layer(head, Y), 0, 1), states


def logits_of(model: Model, src, dec_in, drops=None):
    """Teacher-forced logits `(B, T, Vt)` of int nd arrays `src: (B, Ts)`, `dec_in: (B, T)`."""
    finals = encode(model, src, drops)
    return decode(model, dec_in, finals[-1], finals, drops)[0]


def masked_loss(logits, label, mask):
    """d2l 1.0: `sum(nll * mask) / sum(mask)`; logits `(B, T, V)`, label and mask `(B, T)`."""
    nll = -nd.pick(nd.log_softmax(logits, axis=-1), label, axis=-1)
    return (nll * mask).sum() / mask.sum()


def build_seq2seq(cfg: Seq2SeqConfig, params: Params, dtype: str = "float32",
                  device: str = "cpu") -> Model:
    """A model holding canonical `params` (NumPy) exactly; NotSupported where MXNet cannot."""
    check_seq2seq_params(cfg, params)
    if cfg.impl == "builtin":
        refuse_reset_before(cfg.spec("encoder"), builtin_name("gru"))
    params, ctx = cast_params(params, dtype), resolve_device(device)
    try:
        if cfg.impl == "scratch":
            return build_model(cfg, cfg.impl, params, dtype, ctx, SCRATCH_CODE_PATH)
        builtins = {f"{side}.l{k}": (cfg.layer_spec(side, k), layer_params(params, side, k))
                    for side in SIDES for k in range(cfg.num_layers)}
        head = {k: params[k] for k in HEAD_KEYS}
        path = builtin_code_path(cfg.layer_spec("encoder", 0), dtype, ctx)
        return build_model(cfg, cfg.impl, head, dtype, ctx, f"one-layer {path}, per layer",
                           builtins, lambda named, convert: seq2seq_canonical(cfg, named, convert))
    except mx.base.MXNetError as exc:
        raise NotSupported(f"mxnet {cfg.impl} seq2seq {dtype}: {mxnet_error_text(exc)}") from exc


def forward(model: Model, src, dec_in) -> np.ndarray:
    """Teacher-forced logits `(B, T, Vt)` (NumPy), no dropout; `src: (B, Ts)`, `dec_in: (B, T)`."""
    cfg = model.cfg
    return to_numpy(logits_of(model, model.ids_in(src, cfg.src_vocab_size, "source"),
                              model.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input")))


def loss(model: Model, src, dec_in, label, label_valid_len, drops=None):
    """The masked loss of one batch (dropout scales `drops` as NumPy, None: no dropout), as the
    trainer wants it (call under `autograd.record()`): `(loss, loss, None)`."""
    cfg, label = model.cfg, np.asarray(label)
    drops = None if drops is None else {k: model.array(v) for k, v in drops.items()}
    src, dec_in = (model.ids_in(src, cfg.src_vocab_size, "source"),
                   model.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input"))
    label_nd = model.ids_in(label, cfg.tgt_vocab_size, "label")
    mask = model.array(label_mask(label_valid_len, label.shape[1], model.dtype))
    value = masked_loss(logits_of(model, src, dec_in, drops), label_nd, mask)
    return value, value, None


def loss_grads(model: Model, src, dec_in, label, label_valid_len):
    """`(masked loss, canonical gradients)` (NumPy), no dropout; label `(B, T)`, lengths `(B,)`."""
    with mx.autograd.record():
        value, _, _ = loss(model, src, dec_in, label, label_valid_len)
    value.backward()
    return float(value.asscalar()), model.canonical_grads()


def bias_masks(model: Model) -> Dict[str, np.ndarray]:
    """`common.params.duplicate_bias_masks` of each built-in's `l0_h2h_bias` (see trainer.py for
    why), NumPy (the trainer casts them); empty for scratch."""
    names = [f"{name}.l0_h2h_bias" for name in model.modules]
    return duplicate_bias_masks(model.cfg.layer_spec("encoder", 0), names, NATIVE_GATES["gru"])


def make_trainer(model: Model, lr: float = 0.005, clip: Optional[float] = 1.0,
                 dropout: float = 0.0, seed: int = 0) -> Trainer:
    """Gluon's Adam on every parameter (trainer.py), d2l's global-norm clipping (`clip=None`:
    none), inter-layer dropout with masks drawn in NumPy (common.seq2seq.DropoutDraws, the same
    in every framework): `step(src, dec_in, label, label_valid_len) -> (loss, None)`."""
    draws = DropoutDraws(model.cfg, dropout, seed)

    def dropped_loss(model, src, dec_in, label, label_valid_len):
        return loss(model, src, dec_in, label, label_valid_len, draws.next(src, dec_in))
    return Trainer(model, dropped_loss, make_optimizer(model, "adam", lr), clip, bias_masks(model))


def greedy(model: Model, src, bos: int, eos: int, num_steps: int):
    """Greedy decoding, each row stopping at its first `<eos>`: `src: (B, Ts)` ->
    `(ids: (B, num_steps), lengths: (B,))` int64 NumPy; `ids[i, lengths[i]:]` are `eos`."""
    src = model.ids_in(src, model.cfg.src_vocab_size, "source")
    B = src.shape[0]
    finals = encode(model, src)
    token, states, out = nd.full((B, 1), bos, ctx=model.device, dtype="int64"), finals, []
    done = np.zeros(B, dtype=bool)
    for _ in range(num_steps):
        logits, states = decode(model, token, finals[-1], states)
        token = nd.argmax(logits, axis=-1).astype("int64")
        out.append(to_numpy(token[:, 0]))  # the host sync decides when every row is done
        done |= out[-1] == eos
        if done.all():
            break
    tokens = np.stack(out, axis=1)
    tokens = np.pad(tokens, ((0, 0), (0, num_steps - tokens.shape[1])), constant_values=eos)
    return truncate_at_eos(tokens, eos)
