"""The exercises about what a trained character model does with text: how far back it looks (1),
the history hyperparameter (2), one-hot as an embedding (3), learnable embeddings (5), other
books (6, 7), sampling (8, folding 14), the built-in's difference (11) and compression (16)."""
from __future__ import annotations

import bz2
import gzip
import lzma
import math

import numpy as np

from bench.exercises import lm as L
from bench.exercises.registry import Result, exercise
from bench.exercises.report import fmt, framework_plot, repo_link
from common import corpora
from common.config import LMConfig
from common.errors import DataError
from common.params import init_lm_params
from common.registry import get_backend

SEC_SCRATCH = "d2l 1.0 §9.5 (RNN from scratch)"
# d2l's MXNet-only edition (before the multi-framework ones), "Concise Implementation of
# Recurrent Neural Networks": six exercises (why faster, overfit, autoregression, sampling,
# depth, compression)
SEC_GLUON = "d2l's Gluon edition (MXNet only), concise RNN"


def base_model(ctx, backend, cell="rnn", tkw=None, **ckw):
    """A model trained on The Time Machine with the run's sizes (shared across exercises)."""
    train, _ = L.time_machine(ctx)
    cfg = L.lm_config(ctx, cell, len(train.vocab), **ckw)
    run = L.trained(ctx, backend, cfg, L.train_config(ctx, **(tkw or {})), train)
    return run, *run.model()


def ks_of(kmax: int):
    return [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if k <= kmax]


@exercise(1, f"{SEC_SCRATCH}, exercise 1",
          "Does the prediction depend on every earlier character, back to the first? Change the "
          "character k positions back and measure how far the next-character distribution moves "
          "(KL divergence), with the state carried through the whole context and with it reset "
          "at each window; and the validation perplexity of both ways of reading.")
def history_dependence(ctx) -> Result:
    s, (train, val) = ctx.settings, L.time_machine(ctx)
    ks, rows, panels = ks_of(s.kmax), [], {}
    for backend in ctx.backends:
        for cell in ("rnn", "lstm", "gru"):
            _, be, model = base_model(ctx, backend, cell)
            for regime, window in (("carried", None), ("reset", s.num_steps)):
                div = L.kl_by_distance(be, model, val, ks, s.num_sequences, len(train.vocab),
                                       window)
                ppl = L.perplexity(be, model, val, s.num_steps, carry=window is None)
                rows.append({"framework": backend, "cell": cell, "state": regime,
                             "val_ppl": ppl, **{f"KL@{k}": div[k] for k in ks}})
                panels.setdefault(backend, {})[f"{cell} {regime}"] = (ks, [div[k] for k in ks])
    plot = framework_plot(ctx.out / "ex01_kl.png", panels, "k (positions back)",
                          "KL(p || p perturbed)", logx=True, logy=True)
    answer = history_answer(rows, ks, s.num_steps)
    return Result(rows, answer, [plot])


def farthest(rows, ks) -> int:
    """The largest k at which any row's KL is above zero (0 when none is)."""
    return max((k for k in ks for r in rows if abs(r[f"KL@{k}"]) > 0), default=0)


def history_answer(rows, ks, window) -> str:
    carried = [r for r in rows if r["state"] == "carried"]
    reset = [r for r in rows if r["state"] == "reset"]
    far_c, far_r = farthest(carried, ks), farthest(reset, ks)
    span = lambda sel, key: f"{fmt(min(r[key] for r in sel))} to {fmt(max(r[key] for r in sel))}"
    return (
        f"In principle yes, in practice no. With the state carried, the last character moves "
        f"the next-character distribution by a KL of {span(carried, 'KL@1')} nats; the "
        f"influence falls off with distance (the KL@k columns), and the farthest change that still "
        f"moved any model's float32 output at all was {far_c} characters back (KL there "
        f"{span(carried, f'KL@{far_c}') if far_c else 'none'}); beyond it the prediction is "
        f"bit for bit the same. With the state reset at each {window}-character window nothing "
        f"farther back than the window can matter: the farthest measured effect was {far_r} "
        f"back. Validation perplexity: carried {span(carried, 'val_ppl')}, reset "
        f"{span(reset, 'val_ppl')}.")


@exercise(2, f"{SEC_SCRATCH}, exercise 2",
          "Which hyperparameter sets how much history the model uses? Sweep num_steps (the "
          "length backpropagation runs through) with the state carried across batches or reset "
          "at each, and compare validation perplexity.")
def history_hyperparameter(ctx) -> Result:
    s, (train, val) = ctx.settings, L.time_machine(ctx)
    steps = sorted({8, s.num_steps} if s.name == "quick" else {4, 8, 16, 32, 64})
    rows, panels = [], {}
    for backend in ctx.backends:
        for partition, state in (("sequential", "carried"), ("random", "reset")):
            ys = []
            for T in steps:
                tkw = {"num_steps": T, "partition": partition}
                _, be, model = base_model(ctx, backend, tkw=tkw)
                ppl = L.perplexity(be, model, val, T, carry=state == "carried")
                rows.append({"framework": backend, "num_steps": T, "state": state, "val_ppl": ppl})
                ys.append(ppl)
            panels.setdefault(backend, {})[state] = (steps, ys)
    plot = framework_plot(ctx.out / "ex02_num_steps.png", panels, "num_steps",
                          "validation perplexity", logx=True)
    best = min(rows, key=lambda r: r["val_ppl"])
    by = lambda st, T: [r["val_ppl"] for r in rows if r["state"] == st and r["num_steps"] == T]
    answer = (
        f"num_steps: the window that is read (and backpropagated through) at once; with the "
        f"state reset it is also all the history a prediction can see. Reset, the perplexity "
        f"goes from {fmt(np.mean(by('reset', steps[0])))} at num_steps {steps[0]} to "
        f"{fmt(np.mean(by('reset', steps[-1])))} at {steps[-1]} (mean over frameworks); carried, "
        f"from {fmt(np.mean(by('carried', steps[0])))} to {fmt(np.mean(by('carried', steps[-1])))}"
        f". Best: {fmt(best['val_ppl'])} ({best['framework']}, num_steps {best['num_steps']}, "
        f"{best['state']}).")
    return Result(rows, answer, [plot])


def embedding_twin(cfg: LMConfig, params: dict):
    """The embedding model computing what the one-hot model `cfg, params` computes: its table is
    the one-hot model's `W_xh` (V, H) and its own input weight the identity (H, H)."""
    twin = LMConfig(cfg.cell, cfg.impl, cfg.vocab_size, cfg.hidden_size, cfg.num_layers,
                    cfg.gru_variant, cfg.hidden_size, cfg.activation)
    p = dict(params)
    p["embedding"] = params["l0.W_xh"]
    p["l0.W_xh"] = np.eye(cfg.hidden_size, dtype=params["l0.W_xh"].dtype)
    return twin, p


def one_hot_vs_embedding(backend, impl, dtype, vocab=28, hidden=8, seed=0):
    """max |logits one-hot - logits embedding| and max |one-hot(ids) @ W - W[ids]| in `backend`."""
    cfg = LMConfig("rnn", impl, vocab, hidden)
    params = init_lm_params(cfg, seed, dtype)
    twin, twin_params = embedding_twin(cfg, params)
    be = get_backend(backend)
    ids = np.random.default_rng(seed).integers(0, vocab, size=(3, 11))
    a, _ = be.lm_forward(be.build_lm(cfg, params, dtype), ids, None)
    b, _ = be.lm_forward(be.build_lm(twin, twin_params, dtype), ids, None)
    return float(np.max(np.abs(a - b)))


@exercise(3, f"{SEC_SCRATCH}, exercise 3",
          "One-hot inputs are an embedding: multiplying a one-hot vector by W_xh picks a row of "
          "W_xh. Check it in every framework and implementation: a one-hot model and an "
          "embedding model whose table is that W_xh (input weight the identity) give the same "
          "logits, bit for bit.")
def one_hot_is_embedding(ctx) -> Result:
    rows = [{"framework": b, "impl": impl, "dtype": dt,
             "max_abs_logits_diff": one_hot_vs_embedding(b, impl, dt)}
            for b in ctx.backends for impl in ("scratch", "builtin")
            for dt in ("float32", "float64")]
    exact = [r for r in rows if r["max_abs_logits_diff"] == 0.0]
    inexact = "; ".join(f"{r['framework']}/{r['impl']} {r['dtype']} differs by "
                        f"{fmt(r['max_abs_logits_diff'])}" for r in rows if r not in exact)
    answer = (f"{len(exact)} of {len(rows)} (framework, implementation, dtype) combinations give "
              f"identical logits: a one-hot product adds only zeros to the chosen row, so it is "
              f"exactly a lookup in the table W_xh, and the one-hot model is the embedding model "
              f"whose V x H table is W_xh, with no separate input weight."
              + (f" Not bit for bit: {inexact} (a fused kernel that multiplies a 28-wide and an "
                 f"8-wide input with differently blocked sums: rounding, not a different "
                 f"function)." if inexact else ""))
    return Result(rows, answer)


@exercise(5, f"{SEC_SCRATCH}, exercise 5",
          "Learnable embeddings instead of one-hot inputs: better or not, for the same training "
          "budget (epochs, learning rate, hidden size)?")
def learnable_embeddings(ctx) -> Result:
    s, (train, val) = ctx.settings, L.time_machine(ctx)
    rows = []
    for backend in ctx.backends:
        for embed in (None, s.hidden):
            run, be, model = base_model(ctx, backend, embed_size=embed)
            rows.append({"framework": backend, "inputs": "one-hot" if embed is None else
                         f"embedding {embed}", "parameters": sum(int(np.size(v)) for v in
                                                                 run.params.values()),
                         "train_loss_last": float(np.mean(run.step_losses[-10:])),
                         "val_ppl": L.perplexity(be, model, val, s.num_steps)})
    diff = [b["val_ppl"] - a["val_ppl"] for a, b in zip(rows[::2], rows[1::2])]
    answer = (f"At the same budget the embedding model's validation perplexity differs from the "
              f"one-hot model's by {', '.join(f'{d:+.3f}' for d in diff)} "
              f"({', '.join(ctx.backends)}; negative: embedding better), with "
              f"{rows[1]['parameters'] - rows[0]['parameters']:+,} parameters. A one-hot input "
              f"already is a free V x H table (exercise 3); the embedding adds a V x E table "
              f"before an E x H product, the same function class with a different "
              f"parametrisation, so any gain here comes from how training moves it.")
    return Result(rows, answer)


# ------------------------------------------------------------------ other books (6, 7)

def book_ids(text: str, vocab, limit: int):
    """(ids, raw characters, characters the preprocessing changed, <unk> count) of `text`."""
    tokens = corpora.letter_tokens(text, "char")
    if limit > 0:
        tokens = tokens[:limit]
    ids = np.asarray(vocab[tokens], dtype=np.int64)
    changed = sum(1 for c in text if not ("a" <= c <= "z" or c == " "))
    return ids, len(text), changed, int(np.sum(ids == vocab.unk))


def word_oov_rate(text: str, train_text: str) -> float:
    """Fraction of the words of `text` (d2l's preprocessing) never seen in `train_text`."""
    known = set(corpora.letter_tokens(train_text, "word"))
    words = corpora.letter_tokens(text, "word")
    return sum(w not in known for w in words) / max(len(words), 1)


def score_books(ctx, books) -> list:
    """Rows of perplexity per framework on the Time Machine's held-out part and on `books`."""
    s, (train, val) = ctx.settings, L.time_machine(ctx)
    rows = []
    for backend in ctx.backends:
        _, be, model = base_model(ctx, backend)
        rows.append({"framework": backend, "text": "The Time Machine (held out)",
                     "val_ppl": L.perplexity(be, model, val, s.num_steps), "unk": 0})
        for name, (ids, _, _, unk) in books.items():
            ppl = L.perplexity(be, model, ids, s.num_steps, skip=train.vocab.unk)
            rows.append({"framework": backend, "text": name, "val_ppl": ppl, "unk": unk})
    return rows


def _book_text(ctx, filename, reader, what):
    path = ctx.corpus_path(filename)
    try:
        return reader(path) if path else reader()
    except TypeError:
        raise DataError(f"{what} is read from a file only: "
                        f"pass --data DIR with {filename}") from None


@exercise(6, f"{SEC_SCRATCH}, exercise 6",
          "The model trained on The Time Machine, scored on another book by the same author "
          "(H. G. Wells, The War of the Worlds): how much worse is its perplexity?")
def same_author(ctx) -> Result:
    train, _ = L.time_machine(ctx)
    text = _book_text(ctx, "war_of_the_worlds.txt", corpora.read_war_of_the_worlds,
                      "The War of the Worlds")
    books = {"The War of the Worlds": book_ids(text, train.vocab, ctx.settings.other_tokens)}
    rows = score_books(ctx, books)
    return Result(rows, _books_answer(rows, "The War of the Worlds"))


def _books_answer(rows, name) -> str:
    own = {r["framework"]: r["val_ppl"] for r in rows if r["text"].startswith("The Time")}
    other = {r["framework"]: r["val_ppl"] for r in rows if r["text"] == name}
    ratios = ", ".join(f"{b} {other[b]:.3f} vs {own[b]:.3f}" for b in own)
    return (f"Perplexity on {name} against the Time Machine's own held-out text: {ratios} "
            f"({np.mean([other[b] / own[b] for b in own]):.2f}x on average).")


@exercise(7, f"{SEC_SCRATCH}, exercise 7",
          "And on a book by another author (Tiny Shakespeare, char-rnn's corpus)? Characters "
          "outside the training vocabulary must be handled explicitly.")
def other_author(ctx) -> Result:
    train, _ = L.time_machine(ctx)
    text = _book_text(ctx, "tinyshakespeare.txt", corpora.read_tiny_shakespeare, "Tiny Shakespeare")
    ids, raw, changed, unk = book_ids(text, train.vocab, ctx.settings.other_tokens)
    rows = score_books(ctx, {"Tiny Shakespeare": (ids, raw, changed, unk)})
    tm_text = corpora.read_time_machine(ctx.corpus_path("timemachine.txt"))
    oov = word_oov_rate(text[:20 * ctx.settings.other_tokens], tm_text)
    answer = (_books_answer(rows, "Tiny Shakespeare") + " Out-of-vocabulary handling: the text "
              f"goes through the training text's preprocessing (lower case; every run of "
              f"non-letters becomes one space), which rewrites {changed:,} of its {raw:,} raw "
              f"characters (capitals, punctuation, digits, line breaks); after it, every "
              f"character is one of the 27 the model knows, so "
              f"{unk} scored characters map to <unk> (any that did would be mapped to <unk> and "
              f"left out of the score, and counted here). At the word level the same "
              f"preprocessing leaves {oov:.1%} of Shakespeare's words unseen in The Time Machine: "
              f"a word model would need that handling, a character model does not.")
    return Result(rows, answer, records={"raw_chars": raw, "changed_by_preprocessing": changed,
                                         "unk": unk, "word_oov_rate": oov})


# ------------------------------------------------------------------ sampling (8, 14)

ALPHAS = (0.5, 1.0, 2.0, 4.0, None)   # None: greedy, the limit alpha -> infinity
PREFIX = "the time traveller "


def sample_row(be, model, vocab, alpha, n, seed=0) -> dict:
    from bench.lm.generate import generate
    text = generate(be, model, vocab, "char", PREFIX, n, alpha, seed)
    new = text[len(PREFIX):]
    nll = L.sample_nll(be, model, vocab[list(text)], len(PREFIX))
    return {"alpha": "greedy" if alpha is None else alpha, "distinct_2": L.distinct_ngrams(new, 2),
            "distinct_4": L.distinct_ngrams(new, 4), "longest_repeat": L.longest_repeat(new),
            "model_ppl": math.exp(nll), "sample": new[:70].replace("\n", " ")}


@exercise(8, f"{SEC_SCRATCH}, exercise 8 (and the Gluon edition's sampling exercise: 14)",
          "Sample the next character instead of taking the most likely one, and sharpen the "
          "distribution with q proportional to p^alpha for alpha > 1: how do diversity "
          "(distinct n-grams, the longest repeat) and the model's own perplexity of the text "
          "change?")
def sampling(ctx) -> Result:
    train, _ = L.time_machine(ctx)
    rows = []
    for backend in ctx.backends:
        _, be, model = base_model(ctx, backend)
        rows += [{"framework": backend, **sample_row(be, model, train.vocab, a,
                                                    ctx.settings.sample_len)} for a in ALPHAS]
    mean = lambda a, key: np.mean([r[key] for r in rows if r["alpha"] == a])
    answer = (f"Sampling at alpha 1 gives varied text (distinct 4-grams "
              f"{mean(1.0, 'distinct_4'):.2f}"
              f", longest repeat {mean(1.0, 'longest_repeat'):.0f} characters, mean over "
              f"frameworks) that the model itself finds unlikely (perplexity "
              f"{mean(1.0, 'model_ppl'):.2f}). Raising alpha trades diversity for likelihood: at "
              f"alpha 4 distinct 4-grams {mean(4.0, 'distinct_4'):.2f}, perplexity "
              f"{mean(4.0, 'model_ppl'):.2f}; greedy decoding falls into a loop (longest repeat "
              f"{mean('greedy', 'longest_repeat'):.0f}, distinct 4-grams "
              f"{mean('greedy', 'distinct_4'):.2f}, perplexity {mean('greedy', 'model_ppl'):.2f}). "
              f"Alpha 0.5 flattens the distribution further (perplexity "
              f"{mean(0.5, 'model_ppl'):.2f}). Exercise 14 asks the same and is answered here.")
    return Result(rows, answer)


@exercise(14, f"{SEC_GLUON}, exercise 4",
          "Sample instead of picking the most likely character: the same question as exercise 8.")
def sampling_gluon(ctx) -> Result:
    return Result([], "Folded into exercise 8, which measures sampling with q proportional to "
                      "p^alpha for several alpha in every framework.")


@exercise(11, f"{SEC_GLUON}, exercise 1",
          "Why is the built-in RNN faster than the scratch one, and does it differ in anything "
          "besides speed?")
def builtin_difference(ctx) -> Result:
    why = repo_link(ctx.out, "docs/results/explain-cpu/why-gluon-is-faster.md")
    init = repo_link(ctx.out, "docs/results/lm-quality-d2l-0.17/quality.md")
    return Result([], f"Already measured, no new experiment: `rnnbench explain` ({why}) turns "
                      f"the scratch model into the built-in one change at a time and times each "
                      f"step; beyond speed, `rnnbench lm-quality --preset d2l-0.17` ({init}) "
                      f"trains the built-ins from d2l 0.17's Normal(0.01) start and, in the "
                      f"`_framework_init` rows, from each framework's own default "
                      f"initialisation, which is where built-in and scratch models differ.")


# ------------------------------------------------------------------ compression (16)

def compressed_bits_per_char(text: str) -> dict:
    """Bits per character of `text` (ASCII) under gzip, bzip2 and xz at their strongest levels."""
    data = text.encode("ascii")
    sizes = {"gzip -9": len(gzip.compress(data, 9)), "bzip2 -9": len(bz2.compress(data, 9)),
             "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))}
    return {k: 8 * v / len(text) for k, v in sizes.items()}


@exercise(16, f"{SEC_GLUON}, exercise 6",
          "How well does the model compress text? Its bits per character on held-out text "
          "against gzip, bzip2 and xz on the same bytes, and the model's own size in bits.")
def compression(ctx) -> Result:
    s, (train, val) = ctx.settings, L.time_machine(ctx)
    text = "".join(train.vocab.to_tokens(val))
    rows = [{"coder": name, "framework": "-", "bits_per_char": bpc, "model_bits": 0,
             "total_bits": bpc * len(text)} for name, bpc in compressed_bits_per_char(text).items()]
    for backend in ctx.backends:
        run, be, model = base_model(ctx, backend)
        nll, n = L.nll_per_token(be, model, val, s.num_steps, carry=True)
        size = 32 * sum(int(np.size(v)) for v in run.params.values())
        rows.append({"coder": f"RNN (H={s.hidden}) + arithmetic coding", "framework": backend,
                     "bits_per_char": nll / math.log(2), "model_bits": size,
                     "total_bits": size + nll / math.log(2) * len(text)})
    best = min((r for r in rows if r["framework"] == "-"), key=lambda r: r["bits_per_char"])
    model_rows = [r for r in rows if r["framework"] != "-"]
    answer = (f"On {len(text):,} held-out characters the model needs "
              f"{fmt(min(r['bits_per_char'] for r in model_rows))} to "
              f"{fmt(max(r['bits_per_char'] for r in model_rows))} bits per character, "
              f"{best['coder']} {fmt(best['bits_per_char'])}. But the decoder needs the model: "
              f"{model_rows[0]['model_bits']:,} bits of float32 weights, so the whole message "
              f"costs {fmt(min(r['total_bits'] for r in model_rows) / 8 / 1024)} KiB against "
              f"{fmt(best['total_bits'] / 8 / 1024)} KiB: the weights only pay for themselves on "
              f"far longer texts, and every character costs a forward pass to code and to decode.")
    return Result(rows, answer)
