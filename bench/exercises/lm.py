"""Measurements the language-model exercises share, framework-neutral: a train/validation split,
a training loop that can also sample gradient norms, perplexity with the state carried or reset,
how far back a perturbation still moves the prediction, and the diversity of sampled text."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench.lm.data import LMData, carries_state, epoch_batches, load_corpus
from common.config import LMConfig, TrainConfig
from common.params import init_lm_params
from common.registry import get_backend


def split(data: LMData, val_fraction: float) -> Tuple[LMData, np.ndarray]:
    """(training LMData, held-out ids): the last `val_fraction` of the text is held out."""
    cut = int(len(data.ids) * (1 - val_fraction))
    return LMData(data.name, data.ids[:cut], data.vocab, data.token, data.source), data.ids[cut:]


def time_machine(ctx) -> Tuple[LMData, np.ndarray]:
    """The Time Machine cut to the settings' size, split; loaded once per run."""
    if "time_machine" not in ctx.cache:
        data = load_corpus("time_machine", ctx.corpus_path("timemachine.txt"),
                           max_tokens=ctx.settings.max_tokens)
        ctx.cache["time_machine"] = split(data, ctx.settings.val_fraction)
    return ctx.cache["time_machine"]


def lm_config(ctx, cell: str = "rnn", vocab_size: int = 28, **kw) -> LMConfig:
    s = ctx.settings
    return LMConfig(cell, kw.pop("impl", s.impl), vocab_size, kw.pop("hidden", s.hidden), **kw)


def train_config(ctx, **kw) -> TrainConfig:
    s = ctx.settings
    base = dict(lr=s.lr, clip=1.0, epochs=s.epochs, batch_size=s.batch_size,
                num_steps=s.num_steps, partition="sequential")
    base.update(kw)
    return TrainConfig(**base)


@dataclass
class Trained:
    """A finished (or stopped) run: the parameters, its losses and how it ended."""
    backend: str
    cfg: LMConfig
    tcfg: TrainConfig
    params: dict
    step_losses: List[float] = field(default_factory=list)
    grad_norms: List[Tuple[int, float]] = field(default_factory=list)
    status: str = "finished"          # finished | diverged
    seconds: float = 0.0

    def model(self):
        be = get_backend(self.backend)
        return be, be.build_lm(self.cfg, self.params, self.tcfg.dtype, self.tcfg.device)


def grad_norm(be, model, X, Y, state) -> float:
    """The global gradient norm (before clipping) of the mean loss on one batch."""
    _, grads, _ = be.lm_loss_grads(model, X, Y, state)
    return float(math.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2))
                               for g in grads.values())))


def train_lm(backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData,
             grad_every: int = 0) -> Trained:
    """Train with the backend's own trainer (d2l's loop); every `grad_every` steps also record
    the gradient norm. A non-finite loss ends the run as `diverged`, keeping what it had."""
    be = get_backend(backend)
    model = be.build_lm(cfg, init_lm_params(cfg, tcfg.seed, tcfg.dtype), tcfg.dtype, tcfg.device)
    trainer = be.make_trainer(model, tcfg.optimizer, tcfg.lr, tcfg.clip)
    run = Trained(backend, cfg, tcfg, {})
    rng, step, start = np.random.default_rng(tcfg.seed), 0, time.perf_counter()
    for _ in range(tcfg.epochs):
        state = None
        for X, Y in epoch_batches(data, tcfg, rng):
            state = state if carries_state(tcfg) else None
            if grad_every and step % grad_every == 0:
                run.grad_norms.append((step, grad_norm(be, model, X, Y, state)))
            loss, state = trainer.step(X, Y, state)
            step += 1
            run.step_losses.append(loss)
            if not math.isfinite(loss):
                run.status = "diverged"
                break
        if run.status == "diverged":
            break
    run.params, run.seconds = trainer.params(), time.perf_counter() - start
    return run


def trained(ctx, backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData,
            grad_every: int = 0) -> Trained:
    """`train_lm`, memoised in the context: the same configuration is trained once per run."""
    key = (backend, cfg, tcfg, data.name, len(data.ids), grad_every)
    if key not in ctx.cache:
        ctx.log(f"train {backend} {cfg.impl} {cfg.layer_spec.label} H={cfg.hidden_size} "
                f"T={tcfg.num_steps} {tcfg.partition} clip={tcfg.clip} seed={tcfg.seed}")
        ctx.cache[key] = train_lm(backend, cfg, tcfg, data, grad_every)
    return ctx.cache[key]


# ------------------------------------------------------------------ held-out scoring

def as_rows(ids: np.ndarray, rows: int, window: int) -> np.ndarray:
    """`ids` cut into `rows` parallel streams, each a whole number of windows: (rows, n*window)."""
    per_row = (len(ids) - 1) // rows // window * window
    if per_row < window:
        raise ValueError(f"{len(ids)} tokens cannot fill {rows} rows of one {window}-token window")
    return np.stack([ids[r * per_row:(r + 1) * per_row + 1] for r in range(rows)])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def nll_per_token(be, model, ids: np.ndarray, window: int, carry: bool, rows: int = 8,
                  skip: Optional[int] = None) -> Tuple[float, int]:
    """(mean negative log-likelihood in nats, tokens scored) of `ids`, read in `rows` streams
    window by window, the state carried from window to window or reset to zero at each.
    Targets equal to `skip` (say `<unk>`) are not scored. A short text gets fewer streams."""
    streams = as_rows(ids, max(1, min(rows, (len(ids) - 1) // window)), window)
    total, count, state = 0.0, 0, None
    for start in range(0, streams.shape[1] - 1, window):
        X, Y = streams[:, start:start + window], streams[:, start + 1:start + window + 1]
        logits, state = be.lm_forward(model, X, state if carry else None)
        logp = np.take_along_axis(log_softmax(logits), Y[..., None], axis=-1)[..., 0]
        keep = np.ones_like(Y, dtype=bool) if skip is None else Y != skip
        total -= float(logp[keep].sum())
        count += int(keep.sum())
    return total / max(count, 1), count


def perplexity(be, model, ids, window, carry=True, **kw) -> float:
    return math.exp(nll_per_token(be, model, ids, window, carry, **kw)[0])


# ------------------------------------------------------------------ how far back (exercise 1)

def perturbed_batch(ids: np.ndarray, starts, length: int, ks: Sequence[int], vocab_size: int,
                    rng: np.random.Generator) -> np.ndarray:
    """For each start, the context `ids[s:s+length]` followed by one copy per k with the token
    k positions before the end (k=1: the last one) replaced by another id (never 0, `<unk>`)."""
    out = []
    for s in starts:
        ctx = ids[s:s + length].copy()
        out.append(ctx)
        for k in ks:
            c = ctx.copy()
            c[-k] = 1 + (c[-k] - 1 + rng.integers(1, vocab_size - 1)) % (vocab_size - 1)
            out.append(c)
    return np.stack(out)


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(p || q) over the last axis, from logits."""
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def kl_by_distance(be, model, ids, ks, num_sequences, vocab_size, window=None,
                   seed=0) -> Dict[int, float]:
    """Mean KL between the next-token distributions with and without the token k back changed.

    `window=None`: the whole context is read with the state carried; `window=w`: the state is
    reset at each window, so only the last `w` tokens reach the prediction."""
    rng = np.random.default_rng(seed)
    length = max(ks) + 1
    starts = rng.integers(0, len(ids) - length, size=num_sequences)
    batch = perturbed_batch(ids, starts, length, ks, vocab_size, rng)
    if window is not None:
        batch = batch[:, -window:]
    logits, _ = be.lm_forward(model, batch, None)
    last = logits[:, -1].reshape(num_sequences, len(ks) + 1, -1)
    div = kl(last[:, :1], last[:, 1:])            # (num_sequences, len(ks))
    return {int(k): float(v) for k, v in zip(ks, div.mean(axis=0))}


# ------------------------------------------------------------------ sampled text (exercise 8)

def distinct_ngrams(tokens: Sequence, n: int) -> float:
    """Distinct n-grams over all n-grams (1.0: none repeats)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def longest_repeat(tokens: Sequence, max_len: int = 64) -> int:
    """Length of the longest substring that occurs twice (a loop shows as a long repeat)."""
    text, best = "".join(map(str, tokens)), 0
    for n in range(1, max_len + 1):
        seen, found = set(), False
        for i in range(len(text) - n + 1):
            if text[i:i + n] in seen:
                found = True
                break
            seen.add(text[i:i + n])
        if not found:
            break
        best = n
    return best


def sample_nll(be, model, ids: Sequence[int], prefix_len: int) -> float:
    """Mean NLL (nats) under the model of the tokens after the prefix: their perplexity is exp."""
    ids = np.asarray([ids], dtype=np.int64)
    logits, _ = be.lm_forward(model, ids[:, :-1], None)
    logp = np.take_along_axis(log_softmax(logits), ids[:, 1:, None], axis=-1)[0, :, 0]
    return float(-logp[prefix_len - 1:].mean())
