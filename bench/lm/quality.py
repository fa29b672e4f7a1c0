"""`rnnbench lm-quality`: d2l's language-model settings in every framework x impl, beside the
book's published figures (docs/anchors.md), as JSON records and a markdown table.

Presets:
- `d2l-1.0`: TimeMachine(batch_size=1024, num_steps=32), 10,000 train / 5,000 validation windows,
  hidden 32, SGD, clip 1; the book's lr and epochs per model. Scratch models use d2l's
  N(0, 0.01^2) init (and d2l's scratch GRU is the reset_before variant); concise models use
  U(±1/sqrt(H)), the PyTorch/Gluon built-in default.
- `d2l-0.17`: the older chapter: the first 10,000 characters of the corpus (d2l 0.17's
  `load_data_time_machine(batch_size, num_steps, max_tokens=10000)`), hidden 256, 35 steps,
  batch 32, lr 1, clip 1, sequential partitioning, up to 500 epochs, stopping at a target train
  perplexity (1.2 for the RNNs, 1.1 for the built-in GRU): the time-to-quality figure. (d2l's
  own scratch RNN used hidden 512; this suite fixes 256 for every model.) The concise models start
  as d2l 0.17's Gluon chapter started them (`train_ch8` calls
  `model.initialize(force_reinit=True, init=init.Normal(0.01))`; Gluon's recurrent and Dense
  biases keep their own 'zeros' initialiser): N(0, 0.01^2) weights, zero biases. That is the run
  in which d2l printed about 1.18 for the concise RNN. d2l 0.17's PyTorch chapter keeps
  nn.RNN's default U(±1/sqrt(H)) init and printed 1.3; the "framework init" rows run that start.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

from common import atomic
from common.config import LMConfig, TrainConfig

# d2l 1.0.3 published (train, validation) perplexity per model and framework (docs/anchors.md).
D2L10_ANCHORS = {
    "RNN scratch": {"torch": (6.16, 7.24), "mxnet": (6.23, 7.36), "jax": (6.18, 7.31)},
    "RNN concise": {"torch": (5.87, 7.19), "mxnet": (6.14, 7.32), "jax": None},
    "LSTM scratch": {"torch": (6.94, 7.42), "mxnet": (6.72, 7.46), "jax": (6.90, 7.51)},
    "LSTM concise": {"torch": (5.76, 6.69), "mxnet": (6.23, 6.86), "jax": (5.47, 6.85)},
    "GRU scratch": {"torch": (5.73, 6.74), "mxnet": (5.73, 6.75), "jax": (5.68, 6.68)},
    "GRU concise": {"torch": (4.94, 6.55), "mxnet": (5.37, 6.58), "jax": (5.66, 7.27)},
    "2-layer GRU concise": {"torch": (4.13, 6.11), "mxnet": None, "jax": (3.61, 6.61)},
}
ANCHOR_SOURCE = ("d2l 1.0.3, read off the published training plots of its PyTorch/MXNet/JAX "
                 "notebooks (±0.02), as collected in docs/anchors.md")


@dataclass(frozen=True)
class Model:
    name: str
    cell: str
    impl: str
    lr: float
    epochs: int
    layers: int = 1
    variant: str = "reset_after"
    target_ppl: Optional[float] = None
    init_name: Optional[str] = None  # None: scratch N(0, 0.01^2), built-in U(±1/sqrt(H))

    @property
    def init(self) -> str:
        if self.init_name:
            return self.init_name
        return "normal" if self.impl != "builtin" else "uniform"


PRESETS = {
    "d2l-1.0": dict(
        hidden=32, max_tokens=-1, train=dict(batch_size=1024, num_steps=32, partition="windows",
                              num_train=10000, num_val=5000, clip=1.0),
        models=[Model("RNN scratch", "rnn", "scratch", 1, 100),
                Model("RNN concise", "rnn", "builtin", 1, 100),
                Model("LSTM scratch", "lstm", "scratch", 4, 50),
                Model("LSTM concise", "lstm", "builtin", 4, 50),
                Model("GRU scratch", "gru", "scratch", 4, 50, variant="reset_before"),
                Model("GRU concise", "gru", "builtin", 4, 50),
                Model("2-layer GRU concise", "gru", "builtin", 2, 100, layers=2)]),
    "d2l-0.17": dict(
        hidden=256, max_tokens=10000,
        train=dict(batch_size=32, num_steps=35, partition="sequential", clip=1.0),
        models=[Model("RNN scratch", "rnn", "scratch", 1, 500, target_ppl=1.2),
                Model("RNN concise", "rnn", "builtin", 1, 500, target_ppl=1.2, init_name="normal"),
                Model("GRU concise", "gru", "builtin", 1, 500, target_ppl=1.1, init_name="normal"),
                Model("RNN concise, framework init", "rnn", "builtin", 1, 500, target_ppl=1.2),
                Model("GRU concise, framework init", "gru", "builtin", 1, 500, target_ppl=1.1)]),
}


@dataclass
class QualityRecord:
    preset: str
    model: str
    backend: str
    impl: str
    status: str
    epochs: int
    train_ppl: float
    val_ppl: Optional[float]
    seconds: float
    tokens_per_second: float
    anchor_train: Optional[float] = None
    anchor_val: Optional[float] = None
    target_ppl: Optional[float] = None
    target_reached: Optional[dict] = None
    run_dir: str = ""


def configs(preset: str, model: Model, vocab_size: int, dtype: str, device: str, seed: int):
    spec = PRESETS[preset]
    cfg = LMConfig(model.cell, model.impl, vocab_size, spec["hidden"], model.layers, model.variant)
    tcfg = TrainConfig(lr=model.lr, epochs=model.epochs, dtype=dtype, device=device, seed=seed,
                       target_ppl=model.target_ppl, **spec["train"])
    return cfg, tcfg


def run_one(preset, model, backend, data, out: Path, dtype="float32", device="cpu", seed=0,
            epochs=None, progress=True) -> QualityRecord:
    """Train one model in one backend; the record compares it with d2l's figure."""
    import dataclasses

    from bench.lm.train import train
    from common.params import init_lm_params
    if epochs:
        model = dataclasses.replace(model, epochs=epochs)
    cfg, tcfg = configs(preset, model, len(data.vocab), dtype, device, seed)
    params = init_lm_params(cfg, seed, dtype, init=model.init)
    log = train(backend, cfg, tcfg, data, out, params, progress=progress)
    last = log.epochs[-1]
    anchor = (D2L10_ANCHORS.get(model.name, {}).get(backend) if preset == "d2l-1.0" else None)
    return QualityRecord(preset, model.name, backend, model.impl, log.status, last.epoch,
                         last.train_ppl, last.val_ppl, log.wall_seconds, log.tokens_per_second,
                         *(anchor or (None, None)), model.target_ppl, log.target_reached,
                         out.name)  # relative: the records travel with their directory


def markdown_table(recs: List[dict]) -> str:
    """Rows: model; columns: each backend's validation (or train) perplexity and d2l's."""
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    by = {(r["model"], r["backend"]): r for r in recs}
    models = list(dict.fromkeys(r["model"] for r in recs))
    use_val = any(r["val_ppl"] is not None for r in recs)
    key = "val_ppl" if use_val else "train_ppl"
    head = "| model | " + " | ".join(f"{b} (d2l)" for b in backends) + " | spread |"
    rows = [head, "|---" * (len(backends) + 2) + "|"]
    for m in models:
        cells, values = [], []
        for b in backends:
            r = by.get((m, b))
            if r is None:
                cells.append("—")
                continue
            values.append(r[key])
            anchor = r["anchor_val" if use_val else "anchor_train"]
            cells.append(f"{r[key]:.2f} ({anchor:.2f})" if anchor else f"{r[key]:.2f}")
        spread = f"{100 * (max(values) / min(values) - 1):.1f}%" if len(values) > 1 else "—"
        rows.append(f"| {m} | " + " | ".join(cells) + f" | {spread} |")
    return "\n".join(rows)


def step_agreement(recs: List[dict], root: Path, first: int = 50) -> str:
    """How closely the backends' training trajectories agree, from the runs' `train_log.json`
    under `root`: per model, each backend's largest relative difference of a step's loss from
    the first backend's, over the first `first` steps and over every step both ran."""
    import numpy as np

    from bench.core import records
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    by = {(r["model"], r["backend"]): r for r in recs}
    rows = ["| model | " + " | ".join(f"{b} vs {backends[0]}" for b in backends[1:]) + " |",
            "|---" * len(backends) + "|"]
    for model in dict.fromkeys(r["model"] for r in recs):
        losses = {}
        for b in backends:
            log = root / by[(model, b)]["run_dir"] / "train_log.json" if (model, b) in by else None
            if log is not None and log.exists():
                losses[b] = np.asarray(records.read_json(log).get("step_losses", []))
        ref = losses.get(backends[0])
        cells = []
        for b in backends[1:]:
            if ref is None or b not in losses or not len(losses[b]) or not len(ref):
                cells.append("—")
                continue
            n = min(len(ref), len(losses[b]))
            rel = np.abs(losses[b][:n] - ref[:n]) / np.abs(ref[:n])
            cells.append(f"{rel[:first].max():.1e} (first {min(first, n)}), {rel.max():.1e} "
                         f"(all {n})")
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def slug(name: str) -> str:
    """A model name as a directory name: `RNN concise, framework init` ->
    `RNN_concise_framework_init`."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def choose_models(preset: str, names) -> List[Model]:
    """The preset's models named in `names` (all when empty); an unknown name is an error."""
    known = [m.name for m in PRESETS[preset]["models"]]
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise ValueError(f"preset {preset!r} has no model {', '.join(map(repr, unknown))}; "
                         f"its models: {', '.join(map(repr, known))}")
    return [m for m in PRESETS[preset]["models"] if not names or m.name in names]


def main(preset: str, backends, models, out: Path, path=None, dtype="float32", device="cpu",
         seed=0, epochs=None) -> int:
    from bench.core import records
    from bench.lm.data import load_corpus
    data = load_corpus("time_machine", path, "char", PRESETS[preset]["max_tokens"])
    chosen = choose_models(preset, models)
    recs = []
    for model in chosen:
        for backend in backends:
            run_dir = out / f"{slug(model.name)}-{backend}"
            rec = run_one(preset, model, backend, data, run_dir, dtype, device, seed, epochs)
            recs.append(asdict(rec))
            print(f"{model.name:22s} {backend:6s} {rec.status:15s} epochs {rec.epochs:3d} "
                  f"train {rec.train_ppl:.3f}" + (f" val {rec.val_ppl:.3f}" if rec.val_ppl else "")
                  + f"  {rec.tokens_per_second:,.0f} tok/s", flush=True)
            records.write_json(out / "quality.json", {"preset": preset, "source": ANCHOR_SOURCE,
                                                      "records": recs}, overwrite=True)
    print(write_markdown(out, recs))
    return 0


def write_markdown(out: Path, recs: List[dict]) -> str:
    """`quality.md` in `out` from the records and the runs' logs under it -> its text."""
    text = (markdown_table(recs) + "\n\nPer-step training losses, largest relative difference "
            "from the first backend's:\n\n" + step_agreement(recs, out))
    atomic.write_text(out / "quality.md", text + "\n", overwrite=True)
    return text
