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

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from common.backend import refuse_reset_before
from common.errors import NotSupported
from common.params import Params, cast_params, duplicate_bias_masks
from common.seq2seq import (HEAD_KEYS, SIDES, DropoutDraws, Seq2SeqConfig,
                            check_seq2seq_params, label_mask, layer_params, seq2seq_canonical,
                            truncate_at_eos)

from ._mx import mx
from .adapter import builtin_code_path, mxnet_error_text
from .convert import NATIVE_GATES, from_native, grads_from_native
from .arrays import from_numpy, ids_in, to_numpy
from .devices import resolve_device
from .layers import (SCRATCH_CODE_PATH, builtin_forward, builtin_name, make_builtin,
                     scratch_forward)
from .lm import make_parameter, output_layer
from .train import clip_gradients

nd = mx.nd


@dataclass
class MXNetSeq2Seq:
    """Parameters only: Gluon `Parameter`s by canonical name in `params` (embeddings, output
    layer, and for scratch every GRU layer) and, for builtin, one-layer hybridized GRUs in
    `nets` keyed `encoder.l0`, ... The trainer updates them in place."""

    cfg: Seq2SeqConfig
    dtype: str
    ctx: Any
    params: Dict[str, Any]
    nets: Dict[str, Any] = field(default_factory=dict)
    code_path: str = ""

    def leaves(self) -> Dict[str, Any]:
        """Every trainable `Parameter`: canonical names, and `encoder.l0.l0_i2h_weight`-style."""
        native = {f"{name}.{n[len(net.prefix):]}": p for name, net in self.nets.items()
                  for n, p in net.collect_params().items()}
        return {**self.params, **native}

    def arrays(self) -> Dict[str, Any]:
        """The canonical parameters' current nd arrays."""
        return {k: p.data(self.ctx) for k, p in self.params.items()}

    def ids_in(self, ids, vocab_size: int, name: str):
        """Token ids as an int64 nd array on the model's context, range-checked."""
        return ids_in(ids, self.ctx, vocab_size, name)


def run_stack(model: MXNetSeq2Seq, arrays, side: str, X, states=None, drops=None):
    """`X: (T, B, I)`, states `[(B, H)] * L` or None (zeros) -> `(Y: (T, B, H), finals)`;
    `drops`: common.seq2seq.dropout_scales of this step as nd arrays (None: no dropout)."""
    finals = []
    for k in range(model.cfg.num_layers):
        X = X * drops[f"{side}.l{k}"] if (k and drops) else X
        spec, state = model.cfg.layer_spec(side, k), None if states is None else [states[k]]
        if model.nets:
            X, final = builtin_forward(spec, model.nets[f"{side}.l{k}"], X, state)
        else:
            X, final = scratch_forward(spec, layer_params(arrays, side, k), X, state)
        finals.append(final[0])
    return X, finals


def _embed(table, ids):
    """`ids: (B, T)` -> `(T, B, E)` rows of `table: (V, E)`."""
    V, E = table.shape
    return nd.Embedding(ids.T, table, input_dim=V, output_dim=E, dtype=table.dtype)


def encode(model: MXNetSeq2Seq, arrays, src, drops=None):
    """`src: (B, Ts)` int nd array -> the encoder's final states `[(B, H)] * L`."""
    X = _embed(arrays["encoder.embedding"], src)
    return run_stack(model, arrays, "encoder", X, None, drops)[1]


def decode(model: MXNetSeq2Seq, arrays, dec_in, context, states, drops=None):
    """`dec_in: (B, T)`, context `(B, H)`, states `[(B, H)] * L` ->
    `(logits: (B, T, Vt), states)`."""
    emb = _embed(arrays["decoder.embedding"], dec_in)
    ctx = nd.broadcast_to(context.expand_dims(0), shape=(emb.shape[0],) + context.shape)
    Y, states = run_stack(model, arrays, "decoder", nd.concat(emb, ctx, dim=2), states, drops)
    head = {"W_hq": arrays["decoder.W_hq"], "b_q": arrays["decoder.b_q"]}
    return nd.swapaxes(output_layer(head, Y), 0, 1), states


def logits_of(model: MXNetSeq2Seq, src, dec_in, drops=None):
    """Teacher-forced logits `(B, T, Vt)` of int nd arrays `src: (B, Ts)`, `dec_in: (B, T)`."""
    arrays = model.arrays()
    finals = encode(model, arrays, src, drops)
    return decode(model, arrays, dec_in, finals[-1], finals, drops)[0]


def masked_loss(logits, label, mask):
    """d2l 1.0: `sum(nll * mask) / sum(mask)`; logits `(B, T, V)`, label and mask `(B, T)`."""
    nll = -nd.pick(nd.log_softmax(logits, axis=-1), label, axis=-1)
    return (nll * mask).sum() / mask.sum()


def build_seq2seq(cfg: Seq2SeqConfig, params: Params, dtype: str = "float32",
                  device: str = "cpu") -> MXNetSeq2Seq:
    """A model holding canonical `params` (NumPy) exactly; NotSupported where MXNet cannot."""
    check_seq2seq_params(cfg, params)
    if cfg.impl == "builtin":
        refuse_reset_before(cfg.spec("encoder"), builtin_name("gru"))
    params, ctx = cast_params(params, dtype), resolve_device(device)
    as_params = lambda keys: {k: make_parameter(k, params[k], dtype, ctx) for k in keys}
    try:
        if cfg.impl == "scratch":
            return MXNetSeq2Seq(cfg, dtype, ctx, as_params(params), code_path=SCRATCH_CODE_PATH)
        nets = {f"{side}.l{k}": make_builtin(cfg.layer_spec(side, k),
                                             layer_params(params, side, k), dtype, ctx)
                for side in SIDES for k in range(cfg.num_layers)}
    except mx.base.MXNetError as exc:
        raise NotSupported(f"mxnet {cfg.impl} seq2seq {dtype}: {mxnet_error_text(exc)}") from exc
    path = builtin_code_path(cfg.layer_spec("encoder", 0), dtype, ctx)
    return MXNetSeq2Seq(cfg, dtype, ctx, as_params(HEAD_KEYS), nets, f"one-layer {path}, per layer")


def canonical(model: MXNetSeq2Seq, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
    """NumPy arrays named as `leaves()` -> canonical names (gradients by the chain rule)."""
    if not model.nets:
        return dict(named)
    return seq2seq_canonical(model.cfg, named, grads_from_native if grads else from_native)


def seq2seq_params(model: MXNetSeq2Seq) -> Params:
    """The current parameters in canonical form (NumPy copies)."""
    return canonical(model, {k: to_numpy(p.data(model.ctx)) for k, p in model.leaves().items()})


def forward(model: MXNetSeq2Seq, src, dec_in) -> np.ndarray:
    """Teacher-forced logits `(B, T, Vt)` (NumPy), no dropout; `src: (B, Ts)`, `dec_in: (B, T)`."""
    cfg = model.cfg
    return to_numpy(logits_of(model, model.ids_in(src, cfg.src_vocab_size, "source"),
                              model.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input")))


def loss_and_backward(model: MXNetSeq2Seq, src, dec_in, label, label_valid_len, drops=None):
    """Forward, masked loss and backward: gradients left in the `Parameter`s; nd scalar loss."""
    cfg, label = model.cfg, np.asarray(label)
    src, dec_in = (model.ids_in(src, cfg.src_vocab_size, "source"),
                   model.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input"))
    label_nd = model.ids_in(label, cfg.tgt_vocab_size, "label")
    mask = from_numpy(label_mask(label_valid_len, label.shape[1], model.dtype), model.dtype, model.ctx)
    with mx.autograd.record():
        loss = masked_loss(logits_of(model, src, dec_in, drops), label_nd, mask)
    loss.backward()
    return loss


def loss_grads(model: MXNetSeq2Seq, src, dec_in, label, label_valid_len):
    """`(masked loss, canonical gradients)` (NumPy), no dropout; label `(B, T)`, lengths `(B,)`."""
    loss = loss_and_backward(model, src, dec_in, label, label_valid_len)
    named = {k: to_numpy(p.grad(model.ctx)) for k, p in model.leaves().items()}
    return float(loss.asscalar()), canonical(model, named, grads=True)


def bias_masks(model: MXNetSeq2Seq) -> Dict[str, object]:
    """`common.params.duplicate_bias_masks` of each built-in's `l0_h2h_bias` (see train.py for
    why), as nd arrays; empty for scratch."""
    names = [f"{name}.l0_h2h_bias" for name in model.nets]
    masks = duplicate_bias_masks(model.cfg.layer_spec("encoder", 0), names, NATIVE_GATES["gru"])
    return {k: from_numpy(m, model.dtype, model.ctx) for k, m in masks.items()}


class Trainer:
    """Gluon's Adam on every parameter, d2l's global-norm clipping, inter-layer dropout with masks
    drawn in NumPy (common.seq2seq.DropoutDraws, the same in every framework);
    `step(src, dec_in, label, label_valid_len) -> loss` updates the model in place. Adam: see
    train.py."""

    def __init__(self, model: MXNetSeq2Seq, lr: float, clip: Optional[float], dropout: float,
                 seed: int):
        self.model, self.clip, self.draws = model, clip, DropoutDraws(model.cfg, dropout, seed)
        leaves = model.leaves()
        self.grads = [p.grad(model.ctx) for p in leaves.values()]
        self.masks = [(leaves[name].grad(model.ctx), mask)
                      for name, mask in bias_masks(model).items()]
        self.trainer = mx.gluon.Trainer(list(leaves.values()), "adam", {"learning_rate": lr})

    def step(self, src, dec_in, label, label_valid_len) -> float:
        drops = {k: from_numpy(v, self.model.dtype, self.model.ctx)
                 for k, v in self.draws.next(src, dec_in).items()}
        loss = loss_and_backward(self.model, src, dec_in, label, label_valid_len, drops)
        for grad, mask in self.masks:
            grad *= mask
        if self.clip is not None:
            clip_gradients(self.grads, self.clip)
        self.trainer.step(1)  # the loss is already a mean
        return float(loss.asscalar())

    def params(self) -> Params:
        return seq2seq_params(self.model)


def make_trainer(model: MXNetSeq2Seq, lr: float = 0.005, clip: Optional[float] = 1.0,
                 dropout: float = 0.0, seed: int = 0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping)."""
    return Trainer(model, lr, clip, dropout, seed)


def greedy(model: MXNetSeq2Seq, src, bos: int, eos: int, num_steps: int):
    """Greedy decoding, each row stopping at its first `<eos>`: `src: (B, Ts)` ->
    `(ids: (B, num_steps), lengths: (B,))` int64 NumPy; `ids[i, lengths[i]:]` are `eos`."""
    src = model.ids_in(src, model.cfg.src_vocab_size, "source")
    arrays, B = model.arrays(), src.shape[0]
    finals = encode(model, arrays, src)
    token, states, out = nd.full((B, 1), bos, ctx=model.ctx, dtype="int64"), finals, []
    done = np.zeros(B, dtype=bool)
    for _ in range(num_steps):
        logits, states = decode(model, arrays, token, finals[-1], states)
        token = nd.argmax(logits, axis=-1).astype("int64")
        out.append(to_numpy(token[:, 0]))  # the host sync decides when every row is done
        done |= out[-1] == eos
        if done.all():
            break
    tokens = np.stack(out, axis=1)
    tokens = np.pad(tokens, ((0, 0), (0, num_steps - tokens.shape[1])), constant_values=eos)
    return truncate_at_eos(tokens, eos)
