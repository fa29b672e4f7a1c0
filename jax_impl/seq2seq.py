"""The GRU encoder-decoder (d2l 1.0's `Seq2Seq`) in JAX: pure functions over explicit
parameters (common/seq2seq.py has the canonical keys).

src `(B, Ts)` -> embedding -> GRU stack -> final states `[(B, H)] * L`; dec_in `(B, T)` ->
embedding, concatenated with the context (the last layer's final state) at every step -> GRU
stack started from those states -> `Y @ W_hq + b_q` -> logits `(B, T, Vt)`. Each stack runs one
layer at a time (the scratch `lax.scan` driver or Flax's `nn.RNN(nn.GRUCell)`, from layers.py)
with dropout between layers while training. The loss is d2l's masked mean cross-entropy over
the non-padding labels.

Parameters are one flat dict (a pytree): canonical names for the embeddings and the output
layer (and for scratch every GRU layer); for builtin each layer's Flax parameters under
`encoder.l{k}.` + convert.py's native name, so gradients and Adam act on the built-in's own
parameters. Every call runs inside `Model.scope()` (x64 only for float64); forward, loss and
gradients, greedy decoding and the whole train step (trainer.train_step: loss, gradients,
clipping, Adam) are each one jitted function with the config static.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from common.params import Params, cast_params, sub_params
from common.seq2seq import (HEAD_KEYS, SIDES, DropoutDraws, Seq2SeqConfig,
                            check_seq2seq_params, label_mask, layer_params, seq2seq_canonical,
                            truncate_at_eos)

from .arrays import to_numpy
from .devices import resolve_device
from .layers import builtin_code_path, builtin_forward, scratch_code_path, scratch_forward
from .model import Model, build_model
from .trainer import Trainer, make_optimizer


def run_layer(cfg: Seq2SeqConfig, params, side: str, k: int, X, state):
    """Layer `k` of `side`: `X: (T, B, I)`, state `(B, H)` or None -> `(Y: (T, B, H), final)`."""
    spec, p = cfg.layer_spec(side, k), sub_params(params, f"{side}.l{k}.")
    states = None if state is None else [state]
    if cfg.impl == "builtin":
        Y, finals = builtin_forward(spec, p, X, states)
    else:
        Y, finals = scratch_forward(spec, {"l0." + name: v for name, v in p.items()}, X, states)
    return Y, finals[0]


def run_stack(cfg: Seq2SeqConfig, params, side: str, X, states=None, drops=None):
    """`X: (T, B, I)`, states `[(B, H)] * L` or None (zeros) -> `(Y: (T, B, H), finals)`;
    `drops`: common.seq2seq.dropout_scales of this step as arrays (None: no dropout)."""
    finals = []
    for k in range(cfg.num_layers):
        if k and drops:
            X = X * drops[f"{side}.l{k}"]
        X, final = run_layer(cfg, params, side, k, X, None if states is None else states[k])
        finals.append(final)
    return X, finals


def encode(cfg: Seq2SeqConfig, params, src, drops=None):
    """`src: (B, Ts)` int array -> the encoder's final states `[(B, H)] * L`."""
    X = jnp.take(params["encoder.embedding"], src.T, axis=0)
    return run_stack(cfg, params, "encoder", X, None, drops)[1]


def decode(cfg: Seq2SeqConfig, params, dec_in, context, states, drops=None):
    """`dec_in: (B, T)`, context `(B, H)`, states `[(B, H)] * L` ->
    `(logits: (B, T, Vt), states)`."""
    emb = jnp.take(params["decoder.embedding"], dec_in.T, axis=0)
    X = jnp.concatenate([emb, jnp.broadcast_to(context, emb.shape[:2] + context.shape[1:])], -1)
    Y, states = run_stack(cfg, params, "decoder", X, states, drops)
    logits = Y @ params["decoder.W_hq"] + params["decoder.b_q"]
    return jnp.swapaxes(logits, 0, 1), states


def logits_of(cfg: Seq2SeqConfig, params, src, dec_in, drops=None):
    """Teacher-forced logits `(B, T, Vt)` of `src: (B, Ts)`, `dec_in: (B, T)`."""
    finals = encode(cfg, params, src, drops)
    return decode(cfg, params, dec_in, finals[-1], finals, drops)[0]


def masked_loss(logits, label, mask):
    """d2l 1.0: `sum(nll * mask) / sum(mask)`; logits `(B, T, V)`, label and mask `(B, T)`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, label[..., None], axis=-1)[..., 0]
    return (nll * mask).sum() / mask.sum()


def loss(cfg: Seq2SeqConfig, params, src, dec_in, label, mask, drops=None):
    """The masked loss of one batch of device arrays (`mask`: common.seq2seq.label_mask;
    `drops`: the step's dropout multipliers, None or empty: no dropout), traced, as the
    trainer wants it: `(loss, loss, None)`."""
    value = masked_loss(logits_of(cfg, params, src, dec_in, drops), label, mask)
    return value, value, None


def _masked(cfg, params, src, dec_in, label, mask):
    return loss(cfg, params, src, dec_in, label, mask)[1]


forward_jit = jax.jit(logits_of, static_argnums=0)
loss_and_grads_jit = jax.jit(jax.value_and_grad(_masked, argnums=1), static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def greedy_tokens(cfg, params, src, bos: int, num_steps: int):
    """Raw greedy tokens `(B, num_steps)`: each step feeds back the previous argmax.

    `lax.scan` runs all num_steps; rows past their `<eos>` are cut afterwards (truncate_at_eos),
    which gives what stopping each row there would give.
    """
    finals = encode(cfg, params, src)

    def body(carry, _):
        token, states = carry
        logits, states = decode(cfg, params, token, finals[-1], states)
        token = jnp.argmax(logits, axis=-1).astype(src.dtype)
        return (token, states), token[:, 0]

    start = jnp.full((src.shape[0], 1), bos, dtype=src.dtype)
    _, tokens = lax.scan(body, (start, finals), None, length=num_steps)
    return tokens.T


def _batch(model: Model, src, dec_in, label=None, label_valid_len=None):
    """`(src, dec_in[, label, mask])` as device arrays, ids range-checked; call in scope."""
    cfg = model.cfg
    out = (model.ids_in(np.asarray(src), cfg.src_vocab_size, "source"),
           model.ids_in(np.asarray(dec_in), cfg.tgt_vocab_size, "decoder input"))
    if label is None:
        return out
    label = np.asarray(label)
    return out + (model.ids_in(label, cfg.tgt_vocab_size, "label"),
                  model.array(label_mask(label_valid_len, label.shape[1], model.dtype)))


def build_seq2seq(cfg: Seq2SeqConfig, params: Params, dtype: str = "float32",
                  device: str = "cpu") -> Model:
    """A model holding canonical `params` (NumPy) exactly; NotSupported as `make_builtin`."""
    check_seq2seq_params(cfg, params)
    params, dev = cast_params(params, dtype), resolve_device(device)
    if cfg.impl == "scratch":
        return build_model(cfg, cfg.impl, params, dtype, dev, scratch_code_path(dev.platform))
    builtins = {f"{side}.l{k}": (cfg.layer_spec(side, k), layer_params(params, side, k))
                for side in SIDES for k in range(cfg.num_layers)}
    head = {k: v for k, v in params.items() if k in HEAD_KEYS}
    path = builtin_code_path(cfg.layer_spec("encoder", 0), dev.platform)
    return build_model(cfg, cfg.impl, head, dtype, dev, f"one-layer {path}, per layer",
                       builtins, lambda named, convert: seq2seq_canonical(cfg, named, convert))


def forward(model: Model, src, dec_in) -> np.ndarray:
    """Teacher-forced logits `(B, T, Vt)` (NumPy), no dropout; `src: (B, Ts)`, `dec_in: (B, T)`."""
    with model.scope():
        return np.array(forward_jit(model.cfg, model.params, *_batch(model, src, dec_in)))


def loss_grads(model: Model, src, dec_in, label, label_valid_len):
    """`(masked loss, canonical gradients)` (NumPy), no dropout; label `(B, T)`, lengths `(B,)`."""
    with model.scope():
        batch = _batch(model, src, dec_in, label, label_valid_len)
        value, grads = loss_and_grads_jit(model.cfg, model.params, *batch)
        return float(value), model.canonical(to_numpy(grads), grads=True)


def make_trainer(model: Model, lr: float = 0.005, clip: Optional[float] = 1.0,
                 dropout: float = 0.0, seed: int = 0) -> Trainer:
    """optax's Adam on every parameter, d2l's global-norm clipping (`clip=None`: none),
    inter-layer dropout with masks drawn in NumPy (common.seq2seq.DropoutDraws, the same in
    every framework), the whole step one jitted function (trainer.train_step, the rate an
    array): `step(src, dec_in, label, label_valid_len) -> (loss, None)`."""
    draws = DropoutDraws(model.cfg, dropout, seed)

    def inputs(model, src, dec_in, label, label_valid_len):
        drops = {k: model.array(np.asarray(v)) for k, v in draws.next(src, dec_in).items()}
        return (*_batch(model, src, dec_in, label, label_valid_len), drops)
    return Trainer(model, loss, make_optimizer(model, "adam", lr), clip, inputs=inputs)


def greedy(model: Model, src, bos: int, eos: int, num_steps: int):
    """Greedy decoding, each row stopping at its first `<eos>`: `src: (B, Ts)` ->
    `(ids: (B, num_steps), lengths: (B,))` int64 NumPy; `ids[i, lengths[i]:]` are `eos`."""
    with model.scope():
        src = model.ids_in(np.asarray(src), model.cfg.src_vocab_size, "source")
        tokens = greedy_tokens(model.cfg, model.params, src, int(bos), int(num_steps))
        return truncate_at_eos(np.array(tokens), eos)
