"""`rnnbench ladder`: fastbook chapter 12's LMModel1-7 on Human Numbers in every backend, one
framework-neutral loop over each backend's `ladder` trainer, beside fastbook's figures and the
"always predict the most common token" baseline.

Per epoch, as fastai's `fit_one_cycle` with `ModelResetter`: the state starts at zeros (None)
at the start of training and again at the start of validation, and is carried from batch to
batch by the stateful models (3-7); validation reports mean cross-entropy and accuracy over
every position. `dtype` (float32 as fastbook, or float64) is that of the parameters, states and
optimizer state in every backend. Records go to `ladder.json` after every model; `ladder.md` and
`ladder.png` (bench/fastbook/report.py) at the end.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional

from bench.core import records
from common import atomic
from common import ladder as L
from common.registry import get_module


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float           # mean cross-entropy of the epoch's steps (no AR/TAR)
    valid_loss: float
    accuracy: float
    seconds: float              # training and validation of this epoch


@dataclass
class LadderRecord:
    """One model trained in one backend; `accuracy` is the last epoch's validation accuracy."""

    model: int
    name: str
    backend: str
    device: str
    seed: int
    epochs: int
    lr_max: float
    wd: float
    steps: int
    accuracy: float
    fastbook_accuracy: float
    baseline_accuracy: float    # the most common target of this model's validation batches
    seconds: float
    code_path: str
    history: List[EpochRecord] = field(default_factory=list)
    dtype: str = "float32"      # older ladder.json files, which lack it, ran in float32


def train_epoch(trainer, batches: Iterable, stateful: bool) -> float:
    """One epoch of steps, the state reset to zeros at its start -> mean training loss."""
    state, total, count = None, 0.0, 0
    for x, y in batches:
        loss, state = trainer.step(x, y, state if stateful else None)
        total, count = total + loss, count + 1
    return total / count


def validate(trainer, batches: Iterable, stateful: bool):
    """Validation from a zero state -> (mean cross-entropy, accuracy) over every position."""
    state, loss_sum, correct, count = None, 0.0, 0, 0
    for x, y in batches:
        batch_loss, batch_correct, n, state = trainer.evaluate(x, y, state if stateful else None)
        loss_sum, correct, count = loss_sum + batch_loss, correct + batch_correct, count + n
    return loss_sum / count, correct / count


def fit(trainer, spec: L.LadderSpec, data: L.LadderData, epochs: int, bar=None) -> List[EpochRecord]:
    """`epochs` of training and validation; `bar` (tqdm) gets a postfix per epoch."""
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(trainer, data.train_batches(), spec.stateful)
        valid_loss, accuracy = validate(trainer, data.valid_batches(), spec.stateful)
        history.append(EpochRecord(epoch, train_loss, valid_loss, accuracy,
                                   time.perf_counter() - start))
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"loss {train_loss:.3f} valid {valid_loss:.3f} acc {accuracy:.3f}")
    return history


def run_model(backend: str, spec: L.LadderSpec, ids: L.HumanNumbersIds,
              epochs: Optional[int] = None, seed: int = 0, device: str = "cpu",
              progress: bool = True, dtype: str = "float32") -> LadderRecord:
    """Train `spec` in `backend` with fastbook's settings (`epochs` overrides its count) in
    `dtype`."""
    from bench.core.progress import tqdm

    epochs = epochs or spec.epochs
    data = L.ladder_data(spec, ids.nums)
    sched = L.one_cycle_for(spec, epochs * data.steps_per_epoch)
    params = L.init_params(spec, len(ids.vocab), seed=seed, dtype=dtype)
    start = time.perf_counter()
    trainer = get_module(backend, "ladder").make_trainer(spec, params, sched, device, seed, dtype)
    with tqdm(total=epochs, desc=f"{backend:5s} {spec.name}", unit="epoch",
              disable=not progress, leave=False) as bar:
        history = fit(trainer, spec, data, epochs, bar)
    return LadderRecord(spec.id, spec.name, backend, device, seed, epochs, spec.lr_max, spec.wd,
                        sched.total_steps, history[-1].accuracy, spec.fastbook_accuracy,
                        L.most_common_target(data)[1], time.perf_counter() - start,
                        trainer.code_path, history, dtype)


def main(backends, model_ids, epochs: Optional[int], seed: int, device: str, out: Path,
         quiet: bool = False, dtype: str = "float32") -> int:
    """Every model in every backend; writes ladder.json, ladder.md, ladder.png in `out`."""
    from bench.fastbook import report as ladder_report

    ids, recs, start = L.load_ids(), [], time.perf_counter()
    settings = {"backends": list(backends), "models": list(model_ids), "epochs": epochs,
                "seed": seed, "device": device, "dtype": dtype, "source": L.FASTBOOK_SOURCE,
                "baseline": {"token": L.BASELINE_TOKEN, "accuracy": L.BASELINE_ACCURACY}}
    for model_id in model_ids:
        spec = L.get_spec(model_id)
        for backend in backends:
            rec = run_model(backend, spec, ids, epochs, seed, device, progress=not quiet,
                            dtype=dtype)
            recs.append(asdict(rec))
            print(f"{spec.name} {backend:6s} accuracy {rec.accuracy:.3f} "
                  f"(fastbook {spec.fastbook_accuracy:.3f})  {rec.seconds:.1f} s", flush=True)
            records.write_json(out / "ladder.json", {**settings, "records": recs}, overwrite=True)
    wall = time.perf_counter() - start
    records.write_json(out / "ladder.json", {**settings, "wall_seconds": wall, "records": recs},
                       overwrite=True)
    table = ladder_report.markdown_table(recs)
    atomic.write_text(out / "ladder.md", table + f"\n\nwall time {wall:.0f} s\n",
                         overwrite=True)
    ladder_report.plot_ladder(recs, out / "ladder.png")
    print(table)
    print(f"wall time {wall:.0f} s; wrote {out}")
    return 0
