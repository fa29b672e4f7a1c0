"""The exercises about training itself: hyperparameter search (4), gradient clipping (9), ReLU
(10), overfitting (12) and deeper stacks (15)."""
from __future__ import annotations

import math

import numpy as np

from bench.exercises import lm as L
from bench.exercises.registry import Result, exercise
from bench.exercises.report import fmt, framework_plot
from bench.exercises.text import SEC_GLUON, SEC_SCRATCH
from common.errors import NotSupported

SEC_CONCISE = "d2l 1.0 §9.6 (concise RNN)"


def fit(ctx, backend, cell="rnn", tkw=None, grad_every=0, **ckw):
    """(Trained, backend, model, validation ids) for one configuration on The Time Machine."""
    train, val = L.time_machine(ctx)
    cfg = L.lm_config(ctx, cell, len(train.vocab), **ckw)
    run = L.trained(ctx, backend, cfg, L.train_config(ctx, **(tkw or {})), train, grad_every)
    return (run, *run.model(), val)


def val_ppl(ctx, be, model, val, T=None) -> float:
    ppl = L.perplexity(be, model, val, T or ctx.settings.num_steps)
    return ppl if math.isfinite(ppl) else float("inf")


# ------------------------------------------------------------------ 4: budgeted search

def search_space(trial, s) -> dict:
    """One optuna trial's choice of the four hyperparameters the exercise names."""
    return {"epochs": trial.suggest_int("epochs", 1, s.epochs),
            "hidden": trial.suggest_categorical("hidden", [16, 32, 64, 128]),
            "num_steps": trial.suggest_categorical("num_steps", [8, 16, 32, 64]),
            "lr": trial.suggest_float("lr", 0.1, 8.0, log=True)}


def best_so_far(values):
    out, best = [], float("inf")
    for v in values:
        best = min(best, v)
        out.append(best)
    return out


@exercise(4, f"{SEC_SCRATCH}, exercise 4",
          "How low can validation perplexity go with this architecture? A budgeted search over "
          "epochs, hidden size, num_steps and learning rate (optuna's TPE sampler), per "
          "framework.")
def search(ctx) -> Result:
    try:
        import optuna
    except ImportError:
        raise NotSupported("exercise 4 needs optuna: pip install 'rnnbench[exercises]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s, rows, panels = ctx.settings, [], {}
    for backend in ctx.backends:
        def objective(trial):
            h = search_space(trial, s)
            _, be, model, val = fit(ctx, backend, hidden=h["hidden"], tkw={
                "epochs": h["epochs"], "num_steps": h["num_steps"], "lr": h["lr"]})
            return val_ppl(ctx, be, model, val, h["num_steps"])
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective, n_trials=s.trials)
        values = [t.value for t in study.trials]
        panels[backend] = {"best so far": (list(range(1, len(values) + 1)), best_so_far(values))}
        rows.append({"framework": backend, "trials": len(values), "best_val_ppl": study.best_value,
                     **study.best_params})
    plot = framework_plot(ctx.out / "ex04_search.png", panels, "trial", "best validation ppl")
    best = min(rows, key=lambda r: r["best_val_ppl"])
    each = ", ".join(r["framework"] + " " + fmt(r["best_val_ppl"]) for r in rows)
    first = ", ".join(fmt(curve[1][0]) for curve in (p["best so far"] for p in panels.values()))
    answer = (f"With {s.trials} trials per framework the best validation perplexity is {each} "
              f"(first trial: {first}); the best of all ({best['framework']}) used hidden "
              f"{best['hidden']}, num_steps {best['num_steps']}, lr {fmt(best['lr'])}, "
              f"{best['epochs']} epochs. The sampler is seeded, so every framework is offered the "
              f"same first trials.")
    return Result(rows, answer, [plot])


# ------------------------------------------------------------------ 9, 10: clipping

def clip_settings(s):
    """(learning rates, epochs): d2l's lr and ten times it, where clipping has work to do."""
    return (s.lr, 10 * s.lr), (max(s.epochs // 2, 1) if s.name == "quick" else s.epochs)


def divergence_rows(ctx, activation: str):
    """Per framework, learning rate, clipping on/off and seed: how the run ended, its losses
    and sampled gradient norms (before clipping)."""
    s, rows, loss_panels, norm_panels = ctx.settings, [], {}, {}
    every = 5 if s.name == "quick" else 20
    lrs, epochs = clip_settings(s)
    for backend in ctx.backends:
        for lr in lrs:
            for clip in (1.0, None):
                for seed in s.seeds:
                    run, *_ = fit(ctx, backend, activation=activation, grad_every=every,
                                  tkw={"clip": clip, "seed": seed, "lr": lr, "epochs": epochs})
                    label = f"lr {lr:g} {'clip 1' if clip else 'no clip'} seed {seed}"
                    rows.append(divergence_row(backend, lr, clip, seed, run))
                    losses = run.step_losses
                    loss_panels.setdefault(backend, {})[label] = (list(range(len(losses))), losses)
                    steps, norms = zip(*run.grad_norms) if run.grad_norms else ((), ())
                    norm_panels.setdefault(backend, {})[label] = (list(steps), list(norms))
    return rows, loss_panels, norm_panels


def divergence_row(backend, lr, clip, seed, run) -> dict:
    losses = run.step_losses
    norms = [n for _, n in run.grad_norms]
    finite = [v for v in losses if math.isfinite(v)]
    return {"framework": backend, "lr": lr, "clip": clip or "off", "seed": seed,
            "status": run.status, "steps": len(losses), "first_loss": losses[0],
            "last_loss": losses[-1],
            "max_grad_norm": max(norms) if norms else float("nan"),
            "rose_above_start": bool(finite and max(finite[len(finite) // 2:]) > finite[0])}


def clipping_answer(rows, what: str) -> str:
    parts = []
    for lr in sorted({r["lr"] for r in rows}):
        parts.append(f"at lr {lr:g}, " + clipping_counts([r for r in rows if r["lr"] == lr]))
    return f"{what}: " + "; ".join(parts) + (
        ". (Gradient norms are sampled before clipping: clipping caps the step, not the "
        "gradient.)")


def clipping_counts(rows) -> str:
    def count(off, pred):
        sel = [r for r in rows if (r["clip"] == "off") == off]
        return f"{sum(map(pred, sel))} of {len(sel)}"
    bad = lambda r: r["status"] == "diverged" or r["rose_above_start"]
    norm = lambda off: max((r["max_grad_norm"] for r in rows if (r["clip"] == "off") == off
                            and math.isfinite(r["max_grad_norm"])), default=float("nan"))
    return (f"without clipping {count(True, lambda r: r['status'] == 'diverged')} runs reached "
            f"a non-finite loss and {count(True, bad)} diverged or climbed back above their "
            f"first loss, with clipping at 1 {count(False, bad)}; largest sampled gradient norm "
            f"{fmt(norm(True))} without clipping, {fmt(norm(False))} with it")


def clipping_result(ctx, activation, name, what) -> Result:
    rows, losses, norms = divergence_rows(ctx, activation)
    plots = [framework_plot(ctx.out / f"{name}_loss.png", losses, "step", "training loss",
                            logy=True),
             framework_plot(ctx.out / f"{name}_grad_norm.png", norms, "step",
                            "gradient norm", logy=True)]
    return Result(rows, clipping_answer(rows, what), plots)


@exercise(9, f"{SEC_SCRATCH}, exercise 9",
          "Train without gradient clipping: what happens? Loss and gradient-norm curves with and "
          "without clipping over several seeds, and how often training diverges.")
def no_clipping(ctx) -> Result:
    return clipping_result(ctx, "tanh", "ex09", "tanh RNN")


def relu_parity_summary() -> dict:
    """Status counts of the parity harness on the ReLU RNN (1 layer and 2-layer bidirectional,
    float64 and float32, every backend and implementation)."""
    from bench.parity import harness as parity
    cases = [c for c in parity.default_cases(quick=True) if c.activation == "relu"]
    counts = {}
    for rec in parity.run(cases).records:
        counts[f"{rec.dtype} {rec.status}"] = counts.get(f"{rec.dtype} {rec.status}", 0) + 1
    return counts


def relu_vs_tanh(relu_rows, tanh_rows) -> str:
    """How often each cell went wrong without clipping at the largest learning rate."""
    lr = max(r["lr"] for r in relu_rows)
    bad = lambda rows: sum(r["status"] == "diverged" or r["rose_above_start"] for r in rows
                           if r["lr"] == lr and r["clip"] == "off")
    n = sum(r["lr"] == lr and r["clip"] == "off" for r in relu_rows)
    b_relu, b_tanh = bad(relu_rows), bad(tanh_rows)
    verdict = ("more often than" if b_relu > b_tanh else "as often as" if b_relu == b_tanh
               else "less often than")
    return (f"Without clipping at lr {lr:g}, the ReLU RNN went wrong in {b_relu} of {n} runs, "
            f"{verdict} the tanh RNN ({b_tanh} of {n}). Why it can need clipping: tanh "
            f"saturates, so a large pre-activation stops the gradient, while ReLU is unbounded "
            f"with derivative 1 wherever it is active, so backpropagation through time multiplies "
            f"W_hh blocks and nothing caps their product but W_hh's spectral radius; at small "
            f"initial weights, as here, that product starts small, which is why the measured "
            f"difference is what decides.")


@exercise(10, f"{SEC_SCRATCH}, exercise 10",
          "Replace tanh by ReLU: is gradient clipping still needed, and why? (Needs the ReLU "
          "cell in every framework and implementation, checked by the parity harness.)")
def relu(ctx) -> Result:
    parity_counts = relu_parity_summary()
    res = clipping_result(ctx, "relu", "ex10", "ReLU RNN")
    tanh_rows, _, _ = divergence_rows(ctx, "tanh")   # exercise 9's runs, reused when it ran
    res.answer += (" " + relu_vs_tanh(res.rows, tanh_rows) + " Parity of the ReLU RNN in this "
                   "run: " + ", ".join(f"{k}: {v}" for k, v in sorted(parity_counts.items())) +
                   " (MXNet's fused CPU kernel rounds the ReLU to float32, so its float64 "
                   "built-in says not supported).")
    res.records["parity"] = parity_counts
    return res


# ------------------------------------------------------------------ 12: overfitting

def overfit_configs(s):
    more = s.epochs * 2
    configs = [("baseline", {}, {}), (f"hidden {4 * s.hidden}", {"hidden": 4 * s.hidden}, {}),
               (f"{more} epochs", {}, {"epochs": more}),
               ("no clipping", {}, {"clip": None})]
    if s.name != "quick":
        configs.append((f"hidden {4 * s.hidden}, {more} epochs",
                        {"hidden": 4 * s.hidden}, {"epochs": more}))
    return configs


@exercise(12, f"{SEC_CONCISE}, exercise 1 (the Gluon edition's exercise 2)",
          "Can the model be made to overfit (more hidden units, more epochs, different "
          "clipping)? The gap between training and validation perplexity for each.")
def overfitting(ctx) -> Result:
    s, (train, _) = ctx.settings, L.time_machine(ctx)
    rows = []
    for backend in ctx.backends:
        for label, ckw, tkw in overfit_configs(s):
            run, be, model, val = fit(ctx, backend, tkw=tkw, **ckw)
            tr = val_ppl(ctx, be, model, train.ids)
            va = val_ppl(ctx, be, model, val)
            rows.append({"framework": backend, "setting": label, "train_ppl": tr, "val_ppl": va,
                         "gap": va - tr})
    widest = max(rows, key=lambda r: r["gap"])
    base = [r["gap"] for r in rows if r["setting"] == "baseline"]
    verdict = ("so this setting does overfit: the model fits the training text better than text "
               "it has not seen" if widest["gap"] > 0.05 * widest["train_ppl"] else
               "under 5% of the training perplexity, so no setting here overfits measurably: at "
               "this budget the model still underfits")
    answer = (f"Baseline gap (validation minus training perplexity) {fmt(min(base))} to "
              f"{fmt(max(base))}; the widest gap is {fmt(widest['gap'])} ({widest['framework']}, "
              f"{widest['setting']}: train {fmt(widest['train_ppl'])}, validation "
              f"{fmt(widest['val_ppl'])}), {verdict}.")
    return Result(rows, answer)


# ------------------------------------------------------------------ 15: depth

@exercise(15, f"{SEC_GLUON}, exercise 5 (d2l 0.17 §8.6, exercise 2)",
          "More hidden layers (1 to 4) at the same budget: what happens, and what does it take "
          "to make the deep ones train?")
def depth(ctx) -> Result:
    s, rows, panels = ctx.settings, [], {}
    layers = (1, 2) if s.name == "quick" else (1, 2, 3, 4)
    for backend in ctx.backends:
        for opt, lr in (("sgd", s.lr), ("adam", 0.01)):
            ys = []
            for n in layers:
                run, be, model, val = fit(ctx, backend, num_layers=n,
                                          tkw={"optimizer": opt, "lr": lr})
                ys.append(val_ppl(ctx, be, model, val))
                rows.append({"framework": backend, "layers": n, "optimizer": f"{opt} lr {lr}",
                             "val_ppl": ys[-1], "status": run.status})
            panels.setdefault(backend, {})[f"{opt} lr {lr}"] = (list(layers), ys)
    plot = framework_plot(ctx.out / "ex15_depth.png", panels, "layers", "validation perplexity")
    mean = lambda opt, n: np.mean([r["val_ppl"] for r in rows
                                   if r["optimizer"].startswith(opt) and r["layers"] == n])
    deep = layers[-1]
    helps = mean("adam", deep) < 0.95 * mean("sgd", deep)
    worse = mean("sgd", deep) > mean("sgd", 1)
    answer = (f"With SGD at lr {s.lr} the mean validation perplexity (over frameworks) goes from "
              f"{fmt(mean('sgd', 1))} with 1 layer to {fmt(mean('sgd', deep))} with {deep}; "
              f"with Adam at lr 0.01 from {fmt(mean('adam', 1))} to {fmt(mean('adam', deep))}. "
              + ("At the same budget the deeper stack is worse: each extra tanh layer shrinks "
                 "the gradient that reaches the layers below it. Adam's per-parameter step "
                 "sizes " + ("recover much of that." if helps else "recover little of it "
                 "here: the deep stacks need more epochs than this budget.")
                 if worse else "The deeper stack is no worse at this budget."))
    return Result(rows, answer, [plot])
