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
parameters. Every call runs inside `devices.compute_scope` (x64 only for float64); forward,
loss and gradients, greedy decoding and the whole train step (loss, gradients, clipping, Adam)
are each one jitted function with the config static.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from common.backend import refuse_reset_before
from common.params import Params, cast_params, sub_params
from common.seq2seq import (HEAD_KEYS, SIDES, DropoutDraws, Seq2SeqConfig,
                            check_seq2seq_params, label_mask, layer_params, seq2seq_canonical,
                            truncate_at_eos)

from .arrays import from_numpy, ids_in, to_numpy
from .convert import from_native, grads_from_native, to_native
from .devices import compute_scope, resolve_device
from .layers import (builtin_code_path, builtin_forward, builtin_name, scratch_code_path,
                     scratch_forward)
from .train import clip_gradients


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


def loss_fn(cfg, params, src, dec_in, label, mask, drops=None):
    return masked_loss(logits_of(cfg, params, src, dec_in, drops), label, mask)


forward_jit = jax.jit(logits_of, static_argnums=0)
loss_and_grads_jit = jax.jit(jax.value_and_grad(loss_fn, argnums=1), static_argnums=0)


@functools.lru_cache(maxsize=None)
def adam(lr: float) -> optax.GradientTransformation:
    """One `optax.adam` per learning rate, so that jit's cache keyed on it is hit again."""
    return optax.adam(lr)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def train_step(cfg, lr, clip, params, opt_state, drops, src, dec_in, label, mask):
    """One Adam step on the masked loss, jitted whole: `(params, opt_state, loss)`; `drops`: the
    step's dropout multipliers (a dict of arrays, empty without dropout)."""
    loss, grads = jax.value_and_grad(loss_fn, argnums=1)(cfg, params, src, dec_in, label, mask,
                                                         drops)
    if clip is not None:
        grads = clip_gradients(grads, clip)
    updates, opt_state = adam(lr).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


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


@dataclass
class JaxSeq2Seq:
    """Parameters only: device arrays in `params` (see the module docstring for the names);
    the trainer replaces them after every step."""

    cfg: Seq2SeqConfig
    dtype: str
    device: jax.Device
    params: Dict[str, jax.Array]
    code_path: str = ""

    def scope(self):
        return compute_scope(self.device, self.dtype)

    def ids_in(self, ids, vocab_size: int, name: str) -> jax.Array:
        """Token ids as int32 on the device, range-checked; call inside `scope()`."""
        return ids_in(np.asarray(ids), None, vocab_size, name)

    def array(self, array) -> jax.Array:
        """A NumPy array in the model's dtype on the device; call inside `scope()`."""
        return from_numpy(np.asarray(array), self.dtype)

    def batch(self, src, dec_in, label=None, label_valid_len=None):
        """`(src, dec_in[, label, mask])` as device arrays, ids range-checked."""
        cfg = self.cfg
        out = (self.ids_in(src, cfg.src_vocab_size, "source"),
               self.ids_in(dec_in, cfg.tgt_vocab_size, "decoder input"))
        if label is None:
            return out
        label = np.asarray(label)
        return out + (self.ids_in(label, cfg.tgt_vocab_size, "label"),
                      self.array(label_mask(label_valid_len, label.shape[1], self.dtype)))


def build_seq2seq(cfg: Seq2SeqConfig, params: Params, dtype: str = "float32",
                  device: str = "cpu") -> JaxSeq2Seq:
    """A model holding canonical `params` (NumPy) exactly; NotSupported as `make_builtin`."""
    check_seq2seq_params(cfg, params)
    params, dev = cast_params(params, dtype), resolve_device(device)
    path = scratch_code_path(dev.platform)
    if cfg.impl == "builtin":
        refuse_reset_before(cfg.spec("encoder"), builtin_name("gru"))
        native = {k: params[k] for k in HEAD_KEYS}
        for side in SIDES:
            for k in range(cfg.num_layers):
                spec = cfg.layer_spec(side, k)
                layer = to_native(spec, layer_params(params, side, k))
                native.update({f"{side}.l{k}.{name}": v for name, v in layer.items()})
        params = native
        layer_path = builtin_code_path(cfg.layer_spec("encoder", 0), dev.platform)
        path = f"one-layer {layer_path}, per layer"
    model = JaxSeq2Seq(cfg, dtype, dev, {}, path)
    with model.scope():
        model.params = {k: model.array(v) for k, v in params.items()}
    return model


def canonical(model: JaxSeq2Seq, named: Dict[str, np.ndarray], grads: bool = False) -> Params:
    """NumPy arrays named as `model.params` -> canonical names (gradients by the chain rule)."""
    cfg = model.cfg
    if cfg.impl == "scratch":
        return dict(named)
    return seq2seq_canonical(cfg, named, grads_from_native if grads else from_native)


def seq2seq_params(model: JaxSeq2Seq) -> Params:
    """The current parameters in canonical form (writable NumPy copies)."""
    return canonical(model, to_numpy(model.params))


def forward(model: JaxSeq2Seq, src, dec_in) -> np.ndarray:
    """Teacher-forced logits `(B, T, Vt)` (NumPy), no dropout; `src: (B, Ts)`, `dec_in: (B, T)`."""
    with model.scope():
        return np.array(forward_jit(model.cfg, model.params, *model.batch(src, dec_in)))


def loss_grads(model: JaxSeq2Seq, src, dec_in, label, label_valid_len):
    """`(masked loss, canonical gradients)` (NumPy), no dropout; label `(B, T)`, lengths `(B,)`."""
    with model.scope():
        batch = model.batch(src, dec_in, label, label_valid_len)
        loss, grads = loss_and_grads_jit(model.cfg, model.params, *batch)
        return float(loss), canonical(model, to_numpy(grads), grads=True)


class Trainer:
    """optax's Adam on every parameter, d2l's global-norm clipping, inter-layer dropout with masks
    drawn in NumPy (common.seq2seq.DropoutDraws, the same in every framework); the whole step is
    one jitted function (`train_step`).
    `step(src, dec_in, label, label_valid_len) -> loss` replaces `model.params`."""

    def __init__(self, model: JaxSeq2Seq, lr: float, clip: Optional[float], dropout: float,
                 seed: int):
        self.model, self.static = model, (model.cfg, float(lr), clip)
        self.draws = DropoutDraws(model.cfg, dropout, seed)
        with model.scope():
            self.opt_state = adam(float(lr)).init(model.params)

    def step(self, src, dec_in, label, label_valid_len) -> float:
        model = self.model
        with model.scope():
            batch = model.batch(src, dec_in, label, label_valid_len)
            drops = {k: model.array(v) for k, v in self.draws.next(src, dec_in).items()}
            model.params, self.opt_state, loss = train_step(*self.static, model.params,
                                                            self.opt_state, drops, *batch)
            return float(loss)

    def params(self) -> Params:
        return seq2seq_params(self.model)


def make_trainer(model: JaxSeq2Seq, lr: float = 0.005, clip: Optional[float] = 1.0,
                 dropout: float = 0.0, seed: int = 0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping)."""
    return Trainer(model, lr, clip, dropout, seed)


def greedy(model: JaxSeq2Seq, src, bos: int, eos: int, num_steps: int):
    """Greedy decoding, each row stopping at its first `<eos>`: `src: (B, Ts)` ->
    `(ids: (B, num_steps), lengths: (B,))` int64 NumPy; `ids[i, lengths[i]:]` are `eos`."""
    with model.scope():
        src = model.ids_in(src, model.cfg.src_vocab_size, "source")
        tokens = greedy_tokens(model.cfg, model.params, src, int(bos), int(num_steps))
        return truncate_at_eos(np.array(tokens), eos)
