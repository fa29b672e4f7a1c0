"""Train a language model in any backend: one framework-neutral loop over the adapter's trainer.

Per epoch: batches from `bench.lm_data`, `trainer.step` per batch (state carried and detached
for sequential partitioning, reset otherwise), train perplexity (exp of the mean loss per
token), validation perplexity for the windows partition, an atomic checkpoint of the canonical
parameters. A non-finite loss stops the run naming the step, keeping the last good checkpoint;
Ctrl-C keeps it too.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from bench import records
from bench.lm_data import LMData, carries_state, check_fits, epoch_batches, validation_batches
from common.config import LMConfig, TrainConfig
from common.errors import RnnbenchError
from common.params import init_lm_params, save_params
from common.registry import get_backend

CHECKPOINT = "checkpoint.npz"


class Diverged(RnnbenchError):
    """The loss became NaN or infinite."""


@dataclass
class EpochRecord:
    epoch: int
    step: int
    tokens: int
    seconds: float
    train_ppl: float
    val_ppl: Optional[float] = None


@dataclass
class TrainLog:
    """The JSON log of a run: configs, per-step losses, per-epoch perplexities, how it ended."""
    backend: str
    model: dict
    train: dict
    corpus: dict
    step_losses: List[float] = field(default_factory=list)
    epochs: List[EpochRecord] = field(default_factory=list)
    status: str = "running"            # finished | target reached | diverged | interrupted
    message: str = ""
    target_reached: Optional[dict] = None
    checkpoint: Optional[str] = None
    wall_seconds: float = 0.0
    tokens_per_second: float = 0.0


def checkpoint_meta(backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData, epoch: int,
                    step: int) -> dict:
    """What a checkpoint needs besides parameters, to be loaded in any framework."""
    return {"backend": backend, "model": dataclasses.asdict(cfg), "train": dataclasses.asdict(tcfg),
            "vocab": data.vocab.to_dict(), "token": data.token, "corpus": data.name,
            "epoch": epoch, "step": step}


def evaluate(be, model, data: LMData, tcfg: TrainConfig) -> Optional[float]:
    """Validation perplexity over the windows split (None for other partitions)."""
    total, count = 0.0, 0
    for X, Y in validation_batches(data, tcfg):
        logits, _ = be.lm_forward(model, X, None)
        total += cross_entropy_sum(logits, Y)
        count += Y.size
    return math.exp(total / count) if count else None


def cross_entropy_sum(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum of token cross-entropies: logits (B, T, V), targets (B, T)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).sum())


class Run:
    """One training run: holds the model, trainer, log and output directory."""

    def __init__(self, backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData, out: Path,
                 params=None):
        check_fits(data, tcfg)
        self.be, self.backend, self.cfg, self.tcfg, self.data = get_backend(backend), backend, cfg, tcfg, data
        self.out = Path(out)
        params = params if params is not None else init_lm_params(cfg, tcfg.seed, tcfg.dtype)
        self.model = self.be.build_lm(cfg, params, tcfg.dtype, tcfg.device)
        self.trainer = self.be.make_trainer(self.model, tcfg.optimizer, tcfg.lr, tcfg.clip)
        self.rng = np.random.default_rng(tcfg.seed)
        self.log = TrainLog(backend, dataclasses.asdict(cfg), dataclasses.asdict(tcfg),
                            {"name": data.name, "source": data.source, "tokens": int(len(data.ids)),
                             "vocab_size": len(data.vocab), "token": data.token})
        self.step = 0

    def run_epoch(self, epoch: int) -> EpochRecord:
        start, loss_sum, tokens, state = time.perf_counter(), 0.0, 0, None
        for X, Y in epoch_batches(self.data, self.tcfg, self.rng):
            loss, state = self.trainer.step(X, Y, state if carries_state(self.tcfg) else None)
            self.step += 1
            if not math.isfinite(loss):
                raise Diverged(f"the loss became {loss} at step {self.step} (epoch {epoch}); "
                               f"lower --lr or keep clipping on (--clip)")
            self.log.step_losses.append(loss)
            loss_sum, tokens = loss_sum + loss * Y.size, tokens + Y.size
        seconds = time.perf_counter() - start
        val = None
        if self.tcfg.partition == "windows":
            model = self.be.build_lm(self.cfg, self.trainer.params(), self.tcfg.dtype, self.tcfg.device)
            val = evaluate(self.be, model, self.data, self.tcfg)
        # d2l's exp(sum(loss * tokens) / sum(tokens)): a smaller last batch counts for less
        return EpochRecord(epoch, self.step, tokens, seconds, math.exp(loss_sum / tokens), val)

    def save_checkpoint(self, epoch: int) -> Path:
        meta = checkpoint_meta(self.backend, self.cfg, self.tcfg, self.data, epoch, self.step)
        path = save_params(self.out / CHECKPOINT, self.trainer.params(), meta, overwrite=True)
        self.log.checkpoint = str(path)
        return Path(path)


def _postfix(rec: EpochRecord) -> str:
    val = f" val {rec.val_ppl:.3f}" if rec.val_ppl is not None else ""
    return f"ppl {rec.train_ppl:.3f}{val}, {rec.tokens / rec.seconds:,.0f} tok/s"


def train(backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData, out: Path,
          params=None, progress: bool = True) -> TrainLog:
    """Train, checkpoint every good epoch, write `train_log.json` and `perplexity.png` in `out`."""
    from bench.progress import tqdm

    run = Run(backend, cfg, tcfg, data, out, params)
    log, start = run.log, time.perf_counter()
    bar = tqdm(range(1, tcfg.epochs + 1), desc=f"train {backend}/{cfg.impl} {cfg.cell}",
               unit="epoch", disable=not progress)
    try:
        for epoch in bar:
            rec = run.run_epoch(epoch)
            log.epochs.append(rec)
            run.save_checkpoint(epoch)
            bar.set_postfix_str(_postfix(rec))
            if tcfg.target_ppl and rec.train_ppl <= tcfg.target_ppl:
                log.status = "target reached"
                log.target_reached = {"epoch": epoch, "tokens": sum(e.tokens for e in log.epochs),
                                      "seconds": time.perf_counter() - start,
                                      "train_ppl": rec.train_ppl}
                break
        else:
            log.status = "finished"
    except Diverged as exc:
        log.status, log.message = "diverged", str(exc)
    except KeyboardInterrupt:
        log.status, log.message = "interrupted", f"interrupted at step {run.step}"
    finally:
        bar.close()
    _finish(log, out, start)
    return log


def _finish(log: TrainLog, out: Path, start: float) -> None:
    """Totals, the JSON log and the plot; says where the last good checkpoint is."""
    from bench.plots import plot_perplexity

    log.wall_seconds = time.perf_counter() - start
    train_seconds = sum(e.seconds for e in log.epochs)
    log.tokens_per_second = sum(e.tokens for e in log.epochs) / train_seconds if train_seconds else 0.0
    if log.status in ("diverged", "interrupted"):
        kept = log.checkpoint or "none (no epoch finished)"
        log.message += f"; last good checkpoint: {kept}"
    records.write_json(Path(out) / "train_log.json", log, overwrite=True)
    if log.epochs:
        plot_perplexity(log, Path(out) / "perplexity.png")
