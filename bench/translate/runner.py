"""Train d2l 1.0's GRU encoder-decoder on English-French in any backend, and translate with it.

One framework-neutral loop over the backend's `seq2seq` module (`common.registry.get_module`):
per epoch, shuffled minibatches of the training pairs, `trainer.step` per batch, the masked
validation loss, an atomic checkpoint (canonical parameters, with the configs and both
vocabularies in its meta, so any framework can load it). Then greedy translation, scored with
d2l's BLEU (k=2): d2l's four test sentences, and every pair of the held-out validation slice.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from bench.core import records
from common.batching import minibatches
from common.checkpoint import check_finite, nonfinite_keys
from common.corpora import BOS, EOS, FraEng, encode_sentence, preprocess_nmt
from common.errors import DataError, RnnbenchError
from common.metrics import bleu, corpus_bleu
from common.params import load_params, save_params
from common.registry import get_module
from common.seq2seq import Seq2SeqConfig, TranslateConfig, init_seq2seq_params
from common.vocab import Vocab

CHECKPOINT = "checkpoint.safetensors"
BLEU_K = 2
# d2l 1.0's test sentences and references, and its published BLEU per framework (docs/anchors.md).
D2L_EXAMPLES = (("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."),
                ("i'm home .", "je suis chez moi ."))
D2L_PUBLISHED_BLEU = {"torch": (1.0, 1.0, 0.0, 1.0), "mxnet": (1.0, 1.0, 0.658, 1.0),
                      "jax": (0.0, 0.687, 0.0, 0.512)}


class Diverged(RnnbenchError):
    """The loss became NaN or infinite."""


@dataclass
class EpochRecord:
    epoch: int
    step: int
    seconds: float
    train_loss: float   # mean of the epoch's batch losses (with dropout), as d2l plots it
    val_loss: float     # masked loss over the validation pairs, no dropout


@dataclass
class Translation:
    source: str
    translation: str
    unknown: List[str] = field(default_factory=list)   # source words that became <unk>
    reference: Optional[str] = None
    bleu: Optional[float] = None


@dataclass
class TranslateLog:
    """The JSON record of a run: configs, losses, how it ended, translations and BLEU."""
    backend: str
    code_path: str
    model: dict
    train: dict
    data: dict
    step_losses: List[float] = field(default_factory=list)
    epochs: List[EpochRecord] = field(default_factory=list)
    status: str = "running"            # finished | diverged | interrupted | loaded
    message: str = ""
    checkpoint: Optional[str] = None
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    translations: List[Translation] = field(default_factory=list)
    heldout_bleu: Optional[float] = None
    train_bleu: Optional[float] = None
    d2l_published_bleu: Optional[Sequence[float]] = None


def split(data: FraEng, train: bool):
    """(src, dec_in, label, label_valid_len) of the training or the validation rows."""
    rows = slice(0, data.num_train) if train else slice(data.num_train, None)
    return data.src[rows], data.dec_in[rows], data.label[rows], data.label_valid_len[rows]


def masked_nll_sum(logits: np.ndarray, label: np.ndarray, valid_len: np.ndarray):
    """(sum of the non-padding token losses, their count): logits (B, T, V), label (B, T)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(logp, label[..., None], axis=-1)[..., 0]
    mask = np.arange(label.shape[1])[None, :] < valid_len[:, None]
    return float((nll * mask).sum()), int(mask.sum())


def validation_loss(mod, model, data: FraEng, batch_size: int) -> float:
    """d2l's masked loss over all validation pairs (token-weighted), no dropout."""
    src, dec_in, label, valid = split(data, train=False)
    total, count = 0.0, 0
    for i in range(0, len(src), batch_size):
        rows = slice(i, i + batch_size)
        s, c = masked_nll_sum(mod.forward(model, src[rows], dec_in[rows]), label[rows], valid[rows])
        total, count = total + s, count + c
    return total / count


def checkpoint_meta(backend, cfg, tcfg, data: FraEng, epoch: int, step: int) -> dict:
    """What a checkpoint needs besides parameters, to translate in any framework."""
    return {"kind": "seq2seq", "backend": backend, "model": dataclasses.asdict(cfg),
            "train": dataclasses.asdict(tcfg), "src_vocab": data.src_vocab.to_dict(),
            "tgt_vocab": data.tgt_vocab.to_dict(), "epoch": epoch, "step": step}


class Run:
    """One training run: the backend's module, the model, its trainer, the log."""

    def __init__(self, backend: str, cfg: Seq2SeqConfig, tcfg: TranslateConfig, data: FraEng,
                 out: Path, params=None):
        self.mod, self.backend, self.cfg, self.tcfg, self.data = (
            get_module(backend, "seq2seq"), backend, cfg, tcfg, data)
        self.out = Path(out)
        params = params if params is not None else init_seq2seq_params(cfg, tcfg.seed, tcfg.dtype,
                                                                       tcfg.init)
        self.model = self.mod.build_seq2seq(cfg, params, tcfg.dtype, tcfg.device)
        self.trainer = self.mod.make_trainer(self.model, tcfg.lr, tcfg.clip, tcfg.dropout,
                                             tcfg.seed)
        self.rng = np.random.default_rng(tcfg.seed)
        self.log = TranslateLog(backend, self.model.code_path, dataclasses.asdict(cfg),
                                dataclasses.asdict(tcfg), data_summary(data))
        self.step = 0

    def run_epoch(self, epoch: int) -> EpochRecord:
        src, dec_in, label, valid = split(self.data, train=True)
        start, losses = time.perf_counter(), []
        # d2l's loader: shuffled every epoch, the last batch smaller
        for s, d, y, v in minibatches((src, dec_in, label, valid), self.tcfg.batch_size,
                                      shuffle=True, rng=self.rng):
            loss, _ = self.trainer.step(s, d, y, v)
            self.step += 1
            if not math.isfinite(loss):
                raise Diverged(f"the loss became {loss} at step {self.step} (epoch {epoch}); "
                               "lower --lr or keep clipping on (--clip)")
            losses.append(loss)
        seconds = time.perf_counter() - start
        self.log.step_losses.extend(losses)
        val = validation_loss(self.mod, self.model, self.data, self.tcfg.batch_size)
        return EpochRecord(epoch, self.step, seconds, float(np.mean(losses)), val)

    def save_checkpoint(self, epoch: int) -> Path:
        """The epoch's checkpoint, only when every weight is finite (else Diverged, and the last
        good checkpoint stays)."""
        params = self.trainer.params()
        bad = nonfinite_keys(params)
        if bad:
            raise Diverged(f"the parameters became NaN or infinite ({', '.join(bad[:3])}) by "
                           f"step {self.step} (epoch {epoch}); lower --lr or keep clipping on")
        meta = checkpoint_meta(self.backend, self.cfg, self.tcfg, self.data, epoch, self.step)
        path = save_params(self.out / CHECKPOINT, params, meta, overwrite=True,
                           require_finite=True)
        self.log.checkpoint = str(path)
        return Path(path)


def data_summary(data: FraEng) -> dict:
    return {"name": "fra_eng", "num_train": data.num_train,
            "num_val": int(len(data.src) - data.num_train), "num_steps": data.num_steps,
            "src_vocab_size": len(data.src_vocab), "tgt_vocab_size": len(data.tgt_vocab)}


def train(backend: str, cfg: Seq2SeqConfig, tcfg: TranslateConfig, data: FraEng, out: Path,
          params=None, progress: bool = True) -> Run:
    """Train with a progress bar; checkpoint every good epoch. The run's log tells how it ended."""
    from bench.core.progress import tqdm

    run, start = Run(backend, cfg, tcfg, data, out, params), time.perf_counter()
    bar = tqdm(range(1, tcfg.epochs + 1), desc=f"translate {backend}/{cfg.impl}", unit="epoch",
               disable=not progress)
    try:
        for epoch in bar:
            rec = run.run_epoch(epoch)
            run.log.epochs.append(rec)
            run.save_checkpoint(epoch)
            bar.set_postfix_str(f"loss {rec.train_loss:.3f} val {rec.val_loss:.3f}")
        run.log.status = "finished"
    except Diverged as exc:
        run.log.status, run.log.message = "diverged", str(exc)
    except KeyboardInterrupt:
        run.log.status, run.log.message = "interrupted", f"interrupted at step {run.step}"
    finally:
        bar.close()
    run.log.wall_seconds = time.perf_counter() - start
    run.log.train_seconds = sum(e.seconds for e in run.log.epochs)
    if run.log.status != "finished":
        run.log.message += f"; last good checkpoint: {run.log.checkpoint or 'none'}"
    return run


def load_checkpoint(path, backend: str, impl: Optional[str] = None, device: str = "cpu"):
    """(module, model, src_vocab, tgt_vocab, meta) from a checkpoint written by any backend."""
    params, meta = load_params(path)
    if meta.get("kind") != "seq2seq":
        raise DataError(f"{path} is not a translation checkpoint (written by `rnnbench translate`)")
    check_finite(path, params)
    try:
        cfg = Seq2SeqConfig(**dict(meta["model"], **({"impl": impl} if impl else {})))
        vocabs = Vocab.from_dict(meta["src_vocab"]), Vocab.from_dict(meta["tgt_vocab"])
        dtype = str(params["decoder.b_q"].dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: its metadata was edited or damaged ({type(exc).__name__}: "
                        f"{exc}); use another checkpoint") from None
    mod = get_module(backend, "seq2seq")
    return mod, mod.build_seq2seq(cfg, params, dtype, device), *vocabs, meta


def check_sentences(sentences: Sequence[str]) -> List[str]:
    """The sentences, refusing an empty list or one with no words (before any training)."""
    sentences = list(sentences)
    if not sentences:
        raise DataError("no sentences to translate: give --sentences or a --file with one a line")
    for s in sentences:
        if not preprocess_nmt(s).split():
            raise DataError(f"the sentence {s!r} is empty: type some words to translate")
    return sentences


def read_sentences(path) -> List[str]:
    """Non-blank lines of a UTF-8 file; an error if there are none."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path} has no sentences (one a line)")
    return lines


def greedy_tokens(mod, model, src: np.ndarray, tgt_vocab: Vocab) -> List[List[str]]:
    """Greedy translations of `src: (B, num_steps)` as token lists, cut at `<eos>`."""
    ids, lengths = mod.greedy(model, src, tgt_vocab[BOS], tgt_vocab[EOS], src.shape[1])
    return [tgt_vocab.to_tokens(row[:n]) for row, n in zip(ids, lengths)]


def translate(mod, model, src_vocab: Vocab, tgt_vocab: Vocab, sentences: Sequence[str],
              num_steps: int, references: Optional[Sequence[str]] = None) -> List[Translation]:
    """Translate sentences in one batch; with references, each gets d2l's BLEU (k=2)."""
    encoded = [encode_sentence(s, src_vocab, num_steps) for s in check_sentences(sentences)]
    outputs = greedy_tokens(mod, model, np.stack([ids for ids, _, _ in encoded]), tgt_vocab)
    out = []
    for i, (sentence, tokens) in enumerate(zip(sentences, outputs)):
        ref = None if references is None else references[i]
        score = None if ref is None else bleu(tokens, ref.split(" "), BLEU_K)
        out.append(Translation(sentence, " ".join(tokens), encoded[i][2], ref, score))
    return out


def slice_bleu(mod, model, data: FraEng, train: bool) -> float:
    """Mean sentence BLEU (k=2) of greedy translations of the training or validation slice,
    each against its full French sentence (`<eos>` dropped)."""
    rows = range(data.num_train) if train else range(data.num_train, len(data.src))
    preds = greedy_tokens(mod, model, data.src[rows.start:rows.stop], data.tgt_vocab)
    labels = [[t for t in data.tgt_tokens[i] if t != EOS] for i in rows]
    return corpus_bleu(preds, labels, BLEU_K)


def plot_loss(log: TranslateLog, path: Path) -> Path:
    """Training and validation loss against epoch."""
    from bench.core.plots import _pyplot, save_png
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [e.epoch for e in log.epochs]
    ax.plot(epochs, [e.train_loss for e in log.epochs], label="train (dropout on)")
    ax.plot(epochs, [e.val_loss for e in log.epochs], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked cross-entropy")
    ax.set_title(f"seq2seq {log.backend}/{log.model['impl']} GRU H={log.model['hidden_size']} "
                 f"L={log.model['num_layers']}, English-French")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return Path(path)


def write_log(log: TranslateLog, out: Path) -> Path:
    """`translate_log.json` (and `loss.png` when epochs ran) in `out`."""
    if log.epochs:
        plot_loss(log, Path(out) / "loss.png")
    return records.write_json(Path(out) / "translate_log.json", log, overwrite=True)
