"""The result pages under `docs/`, one per family, each rendered from the records its runs left
under `docs/results/`: `render_X(results) -> (markdown, headline)`. No figure here is typed in;
the prose around the tables holds no numbers."""
from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Dict, List, Tuple

from bench.core import records

Page = Tuple[str, str]


def rebase(markdown: str, prefix: str) -> str:
    """Relative links and images of a page written inside a results directory, made relative to
    `docs/` (`prefix`: e.g. "results/explain-cpu/")."""
    return re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", lambda m: f"]({prefix}{m.group(1)})", markdown)


def demote(markdown: str, levels: int = 1) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", markdown,
                  flags=re.M)


def spread(values) -> float:
    return 100 * (max(values) / min(values) - 1) if len(values) > 1 else 0.0


# ------------------------------------------------------------------ parity and trajectories

def render_parity(results: Path) -> Page:
    from bench.parity import tables as parity_report, seq2seq as seq2seq_parity
    from bench.lm import trajectory
    doc = records.read_json(results / "parity-3impl/parity.json", "a parity record")
    traj = records.read_json(results / "trajectory/trajectory.json", "a trajectory record")
    recs, counts = doc["records"], parity_report.summary_counts(doc["records"])
    worst = {d: max(r["max_abs"] for r in recs if r["status"] == "PASS" and r["dtype"] == d)
             for d in ("float64", "float32")}
    drift = {d: max(r["max_rel"] for r in traj["rows"] if r["dtype"] == d and "max_rel" in r)
             for d in ("float64", "float32")}
    body = [
        "# Parity: do the implementations compute the same thing?", "",
        "Every pair of the nine implementations (three frameworks x `scratch`, `fast`, "
        "`builtin`) runs the same seeded canonical weights, inputs, initial states and "
        "cotangents; the tables give the largest absolute difference over outputs, final states "
        "and gradients. Reproduce: `rnnbench parity --out DIR`; records: "
        "[results/parity-3impl/](results/parity-3impl/parity.json).", "",
        "## Layers: every cell, depth and direction", "",
        demote(parity_report.markdown_section(doc).split("\n", 1)[1].lstrip("\n")), "",
        demote(seq2seq_parity.markdown_section(doc["seq2seq"])).replace(
            "### Parity: seq2seq", "## The encoder–decoder", 1), "",
        "## Training trajectories", "",
        f"`rnnbench trajectory --out DIR`: the same seeded parameters and batches, "
        f"{traj['steps']} SGD steps (lr 1, clip 1, state carried); the largest relative "
        f"difference of a step's loss from `{traj['reference']}`. Records: "
        "[results/trajectory/](results/trajectory/trajectory.json).", "",
        trajectory.compact_table(traj["rows"]), "",
        "Built-ins hold two bias vectors per gate where the scratch cells hold one; the trainers "
        "keep the duplicate (recurrent-side) copies at zero by masking their gradients, so a "
        "built-in trains exactly the canonical model. Inside d2l's `reset_before` GRU the "
        "trainers hold `b_hn` at its initial value for the same reason "
        "(`common.params.redundant_bias_keys`).", ""]
    total = sum(counts.values())
    others = ", ".join(f"{v} {k}" for k, v in counts.items() if v and k != "PASS")
    head = (f"{counts.get('PASS', 0):,} of {total:,} implementation pairs pass ({others}); worst "
            f"difference {worst['float64']:.1e} in float64, {worst['float32']:.1e} in float32; "
            f"50 training steps agree to {drift['float64']:.0e} (float64) and "
            f"{drift['float32']:.0e} (float32) relative")
    return "\n".join(body), head


# ------------------------------------------------------------------ language models

def quality_records(directory: Path, *overrides: str) -> List[dict]:
    """The records of `directory/quality.json`, rows of each `overrides` subdirectory replacing
    the rows of the same model and framework, in the preset's order of models."""
    from bench.lm.quality import PRESETS
    doc = records.read_json(directory / "quality.json", "an lm-quality record")
    recs = doc["records"]
    for sub in overrides:
        newer = records.read_json(directory / sub / "quality.json")["records"]
        keys = {(r["model"], r["backend"]) for r in newer}
        recs = [r for r in recs if (r["model"], r["backend"]) not in keys] + newer
    order = [m.name for m in PRESETS[doc["preset"]]["models"]]
    return sorted(recs, key=lambda r: order.index(r["model"]))


def target_table(recs: List[dict]) -> str:
    """Time to the target train perplexity: final perplexity, epoch, tokens and seconds."""
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    by = {(r["model"], r["backend"]): r for r in recs}
    rows = ["| model | " + " | ".join(backends) + " | spread |", "|---" * (len(backends) + 2) + "|"]
    for m in dict.fromkeys(r["model"] for r in recs):
        cells, vals = [], []
        for b in backends:
            r = by[(m, b)]
            vals.append(r["train_ppl"])
            t = r["target_reached"]
            cells.append(f"{r['train_ppl']:.3f}: epoch {t['epoch']}, {t['tokens'] / 1e6:.2f}M "
                         f"tokens, {t['seconds']:.0f} s" if t else
                         f"{r['train_ppl']:.3f} after {r['epochs']} epochs: not reached")
        target = next(r["target_ppl"] for r in recs if r["model"] == m)
        rows.append(f"| {m} (target {target:g}) | " + " | ".join(cells) +
                    f" | {spread(vals):.1f}% |")
    return "\n".join(rows)


def reached(recs: List[dict]) -> Tuple[int, int]:
    with_anchor = [r for r in recs if r.get("anchor_val")]
    return sum(r["val_ppl"] <= r["anchor_val"] for r in with_anchor), len(with_anchor)


def model_spreads(recs: List[dict]) -> Dict[str, float]:
    models = dict.fromkeys(r["model"] for r in recs)
    return {m: spread([r["val_ppl"] for r in recs if r["model"] == m]) for m in models}


def render_language_models(results: Path) -> Page:
    from bench.lm import quality as lm_quality
    d10 = results / "lm-quality-d2l-1.0"
    f32 = quality_records(d10, "gru-scratch-rerun")
    f64_dir = results / "lm-quality-d2l-1.0-float64"
    f64 = quality_records(f64_dir, "rest")
    d17 = records.read_json(results / "lm-quality-d2l-0.17/quality.json")["records"]
    hit32, n32 = reached(f32)
    hit64, n64 = reached(f64)
    s32, s64 = model_spreads(f32), model_spreads(f64)
    body = [
        "# Language models on The Time Machine", "",
        "## d2l 1.0's setting", "",
        "`rnnbench lm-quality --preset d2l-1.0 --path timemachine.txt` (seed 0; hidden 32, "
        "`num_steps=32`, batch 1024, SGD with d2l's learning rate, clip 1). Final validation "
        "perplexity per framework, d2l 1.0.3's published figure in brackets (read off the "
        "book's plots; [anchors](anchors.md)), and the spread across frameworks. The GRU scratch "
        "rows come from the rerun in "
        "[gru-scratch-rerun/](results/lm-quality-d2l-1.0/gru-scratch-rerun/quality.md).", "",
        "**float32**", "", lm_quality.markdown_table(f32), "",
        f"**float64** (`--dtype float64`; records in "
        f"[results/lm-quality-d2l-1.0-float64/](results/lm-quality-d2l-1.0-float64/quality.md) "
        f"and its `rest/`)", "", lm_quality.markdown_table(f64), "",
        lm_quality.step_agreement(records.read_json(f64_dir / "rest/quality.json")["records"],
                                  f64_dir / "rest"), "",
        "What this shows: in float64 the three frameworks compute the same models, and what "
        "differences remain in float32 are rounding amplified by training. Where a float64 "
        "spread is not zero, the per-step losses agree closely for the first steps and then part "
        "the way a chaotic system's do at d2l's learning rate. Against the book, a single "
        "final-epoch validation figure decides \"reached or not\" partly by chance: it moves "
        "from epoch to epoch at these learning rates.", "",
        "## d2l 0.17's setting: time to a target perplexity", "",
        "`rnnbench lm-quality --preset d2l-0.17 --path timemachine.txt` (seed 0, float32; the "
        "first 10,000 characters, sequential partitioning, the state carried across batches, "
        "hidden 256, SGD lr 1, clip 1, up to 500 epochs, stopping at the target train "
        "perplexity). The concise models start as d2l 0.17's Gluon chapter starts them "
        "(`init.Normal(0.01)`); the \"framework init\" rows from the built-in default "
        "U(±1/√H) that its PyTorch chapter keeps. Records, train logs and plots: "
        "[results/lm-quality-d2l-0.17/](results/lm-quality-d2l-0.17/quality.md).", "",
        target_table(d17), ""]
    head = (f"d2l 1.0's models reach the book's validation perplexity in {hit32} of {n32} "
            f"cases in float32 ({hit64} of {n64} in float64); across frameworks the float64 "
            f"results differ by at most {max(s64.values()):.1f}% "
            f"({sum(v < 0.05 for v in s64.values())} of {len(s64)} models identical to the "
            f"printed digit), float32 by at most {max(s32.values()):.1f}%")
    return "\n".join(body), head


# ------------------------------------------------------------------ fastbook

def seed_summary(results: Path) -> str:
    """Mean ± sd of accuracy per model and framework over the recorded seeds of models 6 and 7."""
    main = records.read_json(results / "ladder/ladder.json")["records"]
    recs = [r for r in main if r["model"] in (6, 7)]
    for path in sorted((results / "ladder").glob("seed*-models-6-7.json")):
        recs += records.read_json(path)["records"]
    seeds = sorted({r["seed"] for r in recs})
    rows = ["| model | " + " | ".join(dict.fromkeys(r["backend"] for r in recs)) + " |",
            "|---|---|---|---|"]
    for model in (6, 7):
        cells = []
        for be in dict.fromkeys(r["backend"] for r in recs):
            acc = [r["accuracy"] for r in recs if r["model"] == model and r["backend"] == be]
            cells.append(f"{statistics.mean(acc):.3f} ± {statistics.stdev(acc):.3f}")
        name = next(r["name"] for r in recs if r["model"] == model)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return (f"Seeds {seeds[0]} to {seeds[-1]} (`rnnbench ladder --models 6 7 --seed S`), "
            "accuracy mean ± sd:\n\n" + "\n".join(rows))


def render_fastbook(results: Path) -> Page:
    from bench.fastbook import report as ladder_report
    f32 = records.read_json(results / "ladder/ladder.json", "a ladder record")["records"]
    f64 = records.read_json(results / "ladder-float64/ladder.json")["records"]
    within = lambda recs: sum(all(abs(r["accuracy"] - r["fastbook_accuracy"]) <= 0.03 or
                                  r["accuracy"] > r["fastbook_accuracy"]
                                  for r in recs if r["model"] == m)
                              for m in dict.fromkeys(r["model"] for r in recs))
    body = [
        "# fastbook's language-model ladder on Human Numbers", "",
        "`rnnbench ladder` (seed 0; every model of fastbook's chapter 12 in every framework with "
        "fastbook's settings: batch 64, hidden 64, `fit_one_cycle` epochs and learning rates, "
        "fastai's Adam with decoupled weight decay, `group_chunks` order, the state reset at "
        "the start of each epoch and of validation). Final validation accuracy, fastbook's "
        "figure and the difference in points in brackets. Records: "
        "[results/ladder/](results/ladder/ladder.md).", "",
        "**float32**", "", ladder_report.markdown_table(f32), "",
        "**float64** (`--dtype float64`; [results/ladder-float64/](results/ladder-float64/"
        "ladder.md), with the per-epoch history)", "", ladder_report.markdown_table(f64), "",
        seed_summary(results), "",
        "Dropout masks are drawn in NumPy from (seed, step) and shared, so LMModel7 is the same "
        "experiment in every framework. fastbook's `nn.RNN`/`nn.LSTM` train two biases per gate, "
        "so the ladder trains both in PyTorch and Gluon and doubles Adam's step on Flax's single "
        "bias (a test holds it to the same trajectory). The unregularised two-layer LSTM "
        "(LMModel6) is the model whose float64 runs part after the one-cycle peak: the three "
        "frameworks compute the same function, and its training amplifies the last bit.", ""]
    m7 = {r["backend"]: r["accuracy"] for r in f32 if r["model"] == 7}
    fb7 = next(r["fastbook_accuracy"] for r in f32 if r["model"] == 7)
    head = (f"{within(f32)} of {len(set(r['model'] for r in f32))} models reach fastbook's "
            f"accuracy within 3 points or beat it in every framework; LMModel7 "
            + " / ".join(f"{v:.3f}" for v in m7.values()) +
            f" ({' / '.join(m7)}) against fastbook's {fb7:.3f}")
    return "\n".join(body), head


# ------------------------------------------------------------------ translation

def render_translation(results: Path) -> Page:
    logs = [records.read_json(p) for p in sorted((results / "translate").glob("*/translate_log.json"))]
    rows = ["| backend / impl | four sentences | mean (d2l's) | held-out BLEU | he's calm . => "
            "| training time |", "|---|---|---|---|---|---|"]
    means = []
    for log in sorted(logs, key=lambda g: (["torch", "mxnet", "jax"].index(g["backend"]),
                                           g["model"]["impl"])):
        bleu = [t["bleu"] for t in log["translations"]]
        mean = sum(bleu) / len(bleu)
        means.append(mean)
        d2l = log.get("d2l_published_bleu")
        pub = f" ({sum(d2l) / len(d2l):.3f})" if d2l and log["model"]["impl"] == "builtin" else ""
        calm = next(t["translation"] for t in log["translations"] if t["source"] == "he's calm .")
        rows.append(f"| {log['backend']} / {log['model']['impl']} | "
                    + " / ".join(f"{b:.3g}" for b in bleu)
                    + f" | {mean:.3f}{pub} | {log['heldout_bleu']:.3f} | `{calm}` | "
                      f"{log['train_seconds']:.1f} s |")
    t = logs[0]["train"]
    body = [
        "# Translation: the GRU encoder–decoder, English → French", "",
        f"`rnnbench translate --backend B --impl I --path /path/to/fra-eng` with d2l's settings "
        f"(embed and hidden {logs[0]['model']['hidden_size']}, {logs[0]['model']['num_layers']} "
        f"layers, dropout {t['dropout']}, Adam lr {t['lr']}, {t['epochs']} epochs, batch "
        f"{t['batch_size']}, {t['num_train']} training / {t['num_val']} held-out pairs), seed "
        f"{t['seed']}. BLEU (k=2) on d2l's four sentences, their mean with the mean of d2l's "
        "published scores for that framework in brackets, and the mean sentence BLEU over the "
        "held-out pairs. Records: [results/translate/](results/translate/).", "",
        "\n".join(rows), "",
        "Scratch and built-in start from the same canonical weights. Dropout masks are drawn in "
        "NumPy from (seed, step, side, layer) and shared by the three frameworks "
        "(`common.seq2seq.DropoutDraws`), so each framework trains the same experiment; what "
        "remains between them is float32 rounding amplified over the epochs, and Gluon's Adam "
        "folding its epsilon differently (`mxnet_impl/trainer.py`).", ""]
    head = (f"the mean BLEU on d2l's four sentences is {min(means):.3f}"
            + (f" to {max(means):.3f}" if max(means) > min(means) else "")
            + f" in all {len(logs)} framework × implementation runs")
    return "\n".join(body), head
