"""Train a language model in any backend: one framework-neutral loop over the adapter's trainer.

Per epoch: batches from `bench.lm.data`, `trainer.step` per batch (state carried and detached
for sequential partitioning, reset otherwise), train perplexity (exp of the mean loss per
token), validation perplexity for the
windows partition, then a checkpoint of the canonical parameters and the log, both atomic.

Nothing is lost: a loss that is NaN, infinite or too large for its perplexity to be a number,
or parameters that became NaN or infinite in an update, stop the run with a message naming the
step; the checkpoint on disk stays the last good one (it is checked finite before it is
written). Ctrl-C and SIGTERM end the same way, with the log written. `resume` continues a run
that was stopped from its checkpoint, with the same settings and the same data order.
A run refuses an `out` directory that already holds files.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from bench.core import records, signals
from bench.lm.data import LMData, carries_state, check_fits, epoch_batches, validation_batches
from bench.lm.run_files import CHECKPOINT, GENERATED, LOG, find_checkpoint
from common.checkpoint import nonfinite_keys
from common.config import LMConfig, TrainConfig
from common.errors import DataError, RnnbenchError, Terminated
from common.params import init_lm_params, lm_param_shapes, save_params
from common.registry import get_backend

MAX_LOSS = math.log(sys.float_info.max)  # ~709.78: beyond it exp(loss) overflows float64


class Diverged(RnnbenchError):
    """The loss or the parameters became NaN or infinite (or the perplexity overflowed)."""


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
    status: str = "running"  # running | finished | target reached | diverged | interrupted | failed
    message: str = ""
    target_reached: Optional[dict] = None
    checkpoint: Optional[str] = None
    wall_seconds: float = 0.0
    tokens_per_second: float = 0.0
    resumed: List[dict] = field(default_factory=list)  # {epoch, step, after}: each resume
    code_path: str = ""      # what ran: the layer's kernels and the output layer's


def perplexity(mean_loss: float) -> float:
    """exp(mean loss), inf past float64's range (never an OverflowError)."""
    return math.exp(mean_loss) if mean_loss <= MAX_LOSS else math.inf


def check_loss(loss: float, step: int, epoch: int) -> None:
    """Raise Diverged when the loss is not finite or its perplexity would overflow."""
    if math.isfinite(loss) and loss <= MAX_LOSS:
        return
    what = f"{loss}" if not math.isfinite(loss) else f"{loss:.4g} (its perplexity overflows)"
    raise Diverged(f"the loss became {what} at step {step} (epoch {epoch}); "
                   "lower --lr or keep clipping on (--clip)")


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
    return perplexity(total / count) if count else None


def cross_entropy_sum(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum of token cross-entropies: logits (B, T, V), targets (B, T)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).sum())


def check_out_free(out: Path) -> None:
    """Refuse, before any work, an `out` that is a file or a directory already holding files."""
    out = Path(out)
    run = out.is_dir() and ((out / LOG).exists() or find_checkpoint(out))
    records.check_new_dir(out, run and f"{out} already holds a training run; continue it with "
                               f"`rnnbench train --resume {out}`, or choose another --out")


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_needed(cfg: LMConfig, tcfg: TrainConfig) -> int:
    """A floor on the host bytes a run takes: parameters, gradients and two optimizer moments;
    on the CPU also the logits, gates and their gradients of one batch, and the windows."""
    item = np.dtype(tcfg.dtype).itemsize
    n = sum(int(np.prod(s)) for s in lm_param_shapes(cfg).values())
    need = 4 * n * item
    if tcfg.device == "cpu":
        per_token = 3 * cfg.vocab_size + 8 * cfg.hidden_size * cfg.num_layers
        need += 2 * tcfg.batch_size * tcfg.num_steps * per_token * item
    if tcfg.partition == "windows":
        need += 16 * tcfg.num_steps * (tcfg.num_train + tcfg.num_val)
    return need


def check_memory(cfg: LMConfig, tcfg: TrainConfig) -> None:
    """DataError, before anything is allocated, when the sizes cannot fit in memory."""
    need, have = memory_needed(cfg, tcfg), available_memory()
    if have is not None and need > have:
        raise DataError(f"these sizes need at least {need / 2**30:,.1f} GiB of memory and "
                        f"{have / 2**30:,.1f} GiB are available: choose a smaller --hidden, "
                        "--embed, --layers, --batch-size or --num-steps")


class Run:
    """One training run: holds the model, trainer, log and output directory."""

    def __init__(self, backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData, out: Path,
                 params=None):
        check_fits(data, tcfg)
        check_memory(cfg, tcfg)
        self.be, self.backend, self.cfg, self.tcfg, self.data = get_backend(backend), backend, cfg, tcfg, data
        self.out = Path(out)
        params = params if params is not None else init_lm_params(cfg, tcfg.seed, tcfg.dtype)
        self.model = self.be.build_lm(cfg, params, tcfg.dtype, tcfg.device)
        self.trainer = self.be.make_trainer(self.model, tcfg.optimizer, tcfg.lr, tcfg.clip)
        self.rng = np.random.default_rng(tcfg.seed)
        path = None if data.source in GENERATED else data.source
        self.log = TrainLog(backend, dataclasses.asdict(cfg), dataclasses.asdict(tcfg),
                            {"name": data.name, "source": data.source, "tokens": int(len(data.ids)),
                             "vocab_size": len(data.vocab), "token": data.token, "path": path},
                            code_path=getattr(self.model, "code_path", ""))
        self.step = 0

    def run_epoch(self, epoch: int) -> EpochRecord:
        start, loss_sum, tokens, state = time.perf_counter(), 0.0, 0, None
        for X, Y in epoch_batches(self.data, self.tcfg, self.rng):
            loss, state = self.trainer.step(X, Y, state if carries_state(self.tcfg) else None)
            self.step += 1
            check_loss(loss, self.step, epoch)
            self.log.step_losses.append(loss)
            loss_sum, tokens = loss_sum + loss * Y.size, tokens + Y.size
        seconds = time.perf_counter() - start
        params = self.checked_params(epoch)
        val = None
        if self.tcfg.partition == "windows":
            model = self.be.build_lm(self.cfg, params, self.tcfg.dtype, self.tcfg.device)
            val = evaluate(self.be, model, self.data, self.tcfg)
        # d2l's exp(sum(loss * tokens) / sum(tokens)): a smaller last batch counts for less
        train_ppl = perplexity(loss_sum / tokens)
        return EpochRecord(epoch, self.step, tokens, seconds, train_ppl, val)

    def checked_params(self, epoch: int):
        """The trainer's parameters; Diverged when an update made any of them NaN or inf."""
        params = self.trainer.params()
        bad = nonfinite_keys(params)
        if bad:
            raise Diverged(f"the parameters became NaN or infinite ({', '.join(bad[:3])}) in "
                           f"the update of step {self.step} (epoch {epoch}); lower --lr or keep "
                           "clipping on (--clip)")
        return params

    def save_checkpoint(self, epoch: int) -> Path:
        """Checkpoint (refused if not finite, so the last good one stays) and the log."""
        meta = checkpoint_meta(self.backend, self.cfg, self.tcfg, self.data, epoch, self.step)
        path = save_params(self.out / CHECKPOINT, self.checked_params(epoch), meta,
                           overwrite=True, require_finite=True)
        self.log.checkpoint = str(path)
        write_log(self.log, self.out)
        return Path(path)

    @classmethod
    def resumed(cls, out: Path, backend: Optional[str] = None) -> Tuple["Run", int]:
        """(the run stopped in `out`, restored from its checkpoint; the next epoch)."""
        from bench.lm.resume import read_stopped_run
        doc, cfg, tcfg, ckpt, params, meta, data = read_stopped_run(Path(out))
        run = cls(backend or doc["backend"], cfg, tcfg, data, out, params)
        run.restore(doc, meta, ckpt)
        return run, int(meta["epoch"]) + 1

    def restore(self, doc: dict, meta: dict, ckpt: Path) -> None:
        """Step, data order and log as they were when the checkpoint was written."""
        epoch, self.step = int(meta["epoch"]), int(meta["step"])
        for _ in range(epoch):                     # the batches those epochs drew, undrawn
            for _ in epoch_batches(self.data, self.tcfg, self.rng):
                pass
        log = self.log
        log.epochs = [EpochRecord(**e) for e in doc["epochs"] if e["epoch"] <= epoch]
        log.step_losses = [float(x) for x in doc["step_losses"][:self.step]]
        log.wall_seconds = float(doc.get("wall_seconds", 0.0))
        log.resumed = list(doc.get("resumed", [])) + [
            {"epoch": epoch, "step": self.step, "after": doc.get("status", "running")}]
        log.checkpoint = str(ckpt)


def _postfix(rec: EpochRecord) -> str:
    val = f" val {rec.val_ppl:.3f}" if rec.val_ppl is not None else ""
    return f"ppl {rec.train_ppl:.3f}{val}, {rec.tokens / rec.seconds:,.0f} tok/s"


def train(backend: str, cfg: LMConfig, tcfg: TrainConfig, data: LMData, out: Path,
          params=None, progress: bool = True) -> TrainLog:
    """Train, checkpoint every good epoch, write `train_log.json` and `perplexity.png` in `out`
    (which must be new or empty)."""
    check_out_free(out)
    return run_epochs(Run(backend, cfg, tcfg, data, out, params), 1, progress)


def resume(out: Path, progress: bool = True) -> TrainLog:
    """Continue the run stopped in `out` (interrupted, or killed) from its checkpoint."""
    run, first = Run.resumed(out)
    return run_epochs(run, first, progress)


def run_epochs(run: Run, first: int, progress: bool = True) -> TrainLog:
    """Epochs `first`..`epochs` of `run`; however they end, the log and plot are written."""
    from bench.core.progress import tqdm

    log, tcfg, start, error = run.log, run.tcfg, time.perf_counter(), None
    bar = tqdm(range(first, tcfg.epochs + 1), desc=f"train {run.backend}/{run.cfg.impl} "
               f"{run.cfg.cell}", unit="epoch", initial=first - 1, total=tcfg.epochs,
               disable=not progress)
    try:
        with signals.sigterm_as_interrupt():
            for epoch in bar:
                rec = run.run_epoch(epoch)
                log.epochs.append(rec)
                run.save_checkpoint(epoch)
                bar.set_postfix_str(_postfix(rec))
                if tcfg.target_ppl and rec.train_ppl <= tcfg.target_ppl:
                    log.status = "target reached"
                    log.target_reached = {"epoch": epoch, "tokens": sum(e.tokens for e in log.epochs),
                                          "seconds": log.wall_seconds + time.perf_counter() - start,
                                          "train_ppl": rec.train_ppl}
                    break
            else:
                log.status = "finished"
    except Diverged as exc:
        log.status, log.message = "diverged", str(exc)
    except KeyboardInterrupt as exc:
        how = "by SIGTERM" if isinstance(exc, Terminated) else "(Ctrl-C)"
        log.status, log.message = "interrupted", f"interrupted {how} at step {run.step}"
    except Exception as exc:  # a framework's own error: the log is written, then it goes on up
        error, log.status = exc, "failed"
        log.message = f"{type(exc).__name__} after {run.step} steps: {' '.join(str(exc).split())}"
    finally:
        bar.close()
    with signals.held_off():                    # a second signal must not lose the log
        _finish(log, run.out, start)
    if error is not None:
        raise error
    return log


def write_log(log: TrainLog, out: Path) -> Path:
    return records.write_json(Path(out) / LOG, log, overwrite=True)


def _finish(log: TrainLog, out: Path, start: float) -> None:
    """Totals, the JSON log and the plot; says where the last good checkpoint is."""
    from bench.core.plots import plot_perplexity

    log.wall_seconds += time.perf_counter() - start
    train_seconds = sum(e.seconds for e in log.epochs)
    log.tokens_per_second = sum(e.tokens for e in log.epochs) / train_seconds if train_seconds else 0.0
    if log.status in ("diverged", "interrupted", "failed"):
        kept = log.checkpoint or "none (no epoch finished)"
        log.message += f"; last good checkpoint: {kept}"
    if log.status in ("interrupted", "failed") and log.checkpoint:
        log.message += f"; continue with `rnnbench train --resume {out}`"
    write_log(log, out)
    if log.epochs:
        plot_perplexity(log, Path(out) / "perplexity.png")
