"""The rungs' report: `why-gluon-is-faster.md` (the answer to d2l's exercise, templated from
the records: no figure in it is typed by hand), its tables, and `explain.png`.

Input: bench/explain/runner.py's `RungRecord`s as dicts (explain.json's `records`) and its config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from bench.core import status as S
from bench.core.plots import optional_chart
from common import atomic
from common.flops import step_flops
from common.rungs import PRODUCTS, RUNG_INFO, RUNG_ORDER

NAMES = {"torch": "PyTorch", "mxnet": "MXNet Gluon", "jax": "JAX"}
BUILTINS = {"torch": "`nn.LSTM`", "mxnet": "`gluon.rnn.LSTM`", "jax": "Flax's `OptimizedLSTMCell`"}
SCRATCH_BOUND = 1.25   # the bar: best hand-written rung within 1.25x of the framework's built-in
JAX_VS_FASTEST = 0.8   # the bar: JAX fast at least 0.8x the fastest built-in


def rung_table(recs: List[dict]) -> Dict[tuple, Dict[str, dict]]:
    """`{(framework, device, hidden): {rung: record}}` over the records that were measured."""
    out: Dict[tuple, Dict[str, dict]] = {}
    for r in recs:
        if r.get("median_s"):
            out.setdefault((r["framework"], r["device"], r["hidden"]), {})[r["rung"]] = r
    return out


def where(device: str, hidden: int) -> str:
    return f"H={hidden}, {device}"


def rate(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:,.0f}"


def num(x: Optional[float], spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def best_hand_written(rungs: Dict[str, dict]) -> Optional[dict]:
    """The fastest rung that is not the built-in."""
    written = [r for name, r in rungs.items() if name != "builtin"]
    return max(written, key=lambda r: r["tokens_per_s"], default=None)


def steps_of(rungs: Dict[str, dict]) -> List[tuple]:
    """`(record, share of the gap this rung's change closed)` in rung order."""
    ordered = [rungs[name] for name in RUNG_ORDER if name in rungs]
    out, before = [], 0.0
    for r in ordered:
        closed = r.get("gap_closed")
        out.append((r, None if closed is None else closed - before))
        before = closed if closed is not None else before
    return out


def rungs_table(rungs: Dict[str, dict]) -> str:
    """One framework at one size: each rung, what it changes, its speed, ops, gap closed."""
    rows = ["| rung | what changes | tokens/s | ops per time step | gap closed | this change |",
            "|---|---|---:|---:|---:|---:|"]
    for r, share in steps_of(rungs):
        change = RUNG_INFO[r["rung"]].describe(r["framework"])
        rows.append(f"| {r['label']} | {change} | {rate(r['tokens_per_s'])}"
                    f" | {num(r['ops_per_step'])} | {pct(r['gap_closed'])} | {pct(share)} |")
    return "\n".join(rows)


def answer(framework: str, rungs: Dict[str, dict]) -> str:
    """The prose answer for one framework at one size and device, every number from `rungs`."""
    d2l, builtin = rungs.get("d2l"), rungs.get("builtin")
    if not (d2l and builtin):
        return "(the d2l and built-in rungs were not both measured here)"
    ratio = builtin["tokens_per_s"] / d2l["tokens_per_s"]
    text = [f"In {NAMES[framework]}, {BUILTINS[framework]} trains at "
            f"{rate(builtin['tokens_per_s'])} tokens/s and d2l's scratch loop at "
            f"{rate(d2l['tokens_per_s'])}: {ratio:.1f}x the scratch loop's speed. Per time step "
            f"the scratch loop runs {num(d2l['ops_per_step'])} operators and the built-in "
            f"{num(builtin['ops_per_step'])} (counted as {builtin['ops_source']})."]
    if builtin["ops_per_step"] < d2l["ops_per_step"]:
        text.append("The built-in does the same arithmetic in fewer, larger operations, while "
                    "each operator of the scratch loop is one call from Python into the "
                    f"framework on a matrix of B={d2l['batch']} rows.")
    text.append(_largest_step(framework, rungs))
    text.append(_remainder(rungs))
    text.append(_in_short(rungs))
    return " ".join(t for t in text if t)


def _largest_step(framework: str, rungs: Dict[str, dict]) -> str:
    shares = [(share, r) for r, share in steps_of(rungs)
              if share is not None and r["rung"] not in ("d2l", "builtin")]
    if not shares:
        return ""
    share, r = max(shares, key=lambda s: s[0])
    return (f"Among the hand-written rungs, the change that closes most of the gap is "
            f"\"{r['label']}\" ({RUNG_INFO[r['rung']].describe(framework)}): {pct(share)} of it.")


def _in_short(rungs: Dict[str, dict]) -> str:
    """The one-sentence answer, its wording chosen by the numbers."""
    best, builtin = best_hand_written(rungs), rungs["builtin"]
    if best is None or best.get("gap_closed") is None:
        return ""
    if best["gap_closed"] >= 1:
        return (f"In short: the built-in is fast because it does what these rungs do; written "
                f"out, they reach {best['tokens_per_s'] / builtin['tokens_per_s']:.2f}x its "
                "speed.")
    if best["gap_closed"] < 0.5:
        fewest = min(r["ops_per_step"] for name, r in rungs.items() if name != "builtin")
        return (f"In short: the hand-written changes close only {pct(best['gap_closed'])} of "
                "the gap; the built-in's speed comes mostly from its fused kernel, one "
                f"operator for the whole sequence where every hand-written rung runs at least "
                f"{num(fewest)} per time step.")
    return (f"In short: the hand-written changes close {pct(best['gap_closed'])} of the gap; "
            "the rest is the fused kernel's own.")


def _remainder(rungs: Dict[str, dict]) -> str:
    best, builtin = best_hand_written(rungs), rungs["builtin"]
    if best is None or best.get("gap_closed") is None:
        return ""
    ratio = best["tokens_per_s"] / builtin["tokens_per_s"]
    if ratio >= 1:
        return (f"The best hand-written rung, \"{best['label']}\", is {ratio:.2f}x the built-in's "
                "speed: these changes account for the whole gap.")
    text = (f"The best hand-written rung, \"{best['label']}\", reaches {ratio:.2f}x the built-in's "
            f"speed; the remaining {pct(1 - best['gap_closed'])} of the gap is what the built-in "
            "does beyond these changes")
    if builtin["framework"] == "jax":
        return text + "."
    return text + (": one library call per layer that runs the whole recurrence in its own "
                   "kernels and forms the weight gradients in large matrix products.")


def requirements(recs: List[dict]) -> str:
    """The speed criteria (docs/performance.md), each with its measured ratio and whether it
    is met."""
    lines, table = [], rung_table(recs)
    for device, hidden in sorted({(d, h) for _, d, h in table}):
        here = {fw: rungs for (fw, d, h), rungs in table.items() if (d, h) == (device, hidden)}
        builtins = [rungs["builtin"] for rungs in here.values() if "builtin" in rungs]
        jax, at = here.get("jax", {}), where(device, hidden)
        jax_fast = jax.get("fast") or jax.get("hand_vjp")
        if jax_fast and builtins:
            mine = jax_fast["tokens_per_s"]
            if "builtin" in jax:
                flax = mine / jax["builtin"]["tokens_per_s"]
                lines.append(f"- {at}: JAX fast (lax.scan, hand backward) / Flax built-in"
                             f" = {flax:.2f} (needs >= 1: {'met' if flax >= 1 else 'not met'})")
            fastest = max(builtins, key=lambda r: r["tokens_per_s"])
            vs = mine / fastest["tokens_per_s"]
            lines.append(f"- {at}: JAX fast / fastest built-in ({fastest['framework']}) "
                         f"= {vs:.2f} (needs >= {JAX_VS_FASTEST}: "
                         f"{'met' if vs >= JAX_VS_FASTEST else 'not met'})")
        for fw, rungs in sorted(here.items()):
            best = best_hand_written(rungs)
            if best and "builtin" in rungs:
                slow = rungs["builtin"]["tokens_per_s"] / best["tokens_per_s"]
                lines.append(f"- {at}: {NAMES[fw]} built-in / best hand-written rung "
                             f"(\"{best['label']}\") = {slow:.2f} (needs <= {SCRATCH_BOUND}: "
                             f"{'met' if slow <= SCRATCH_BOUND else 'not met'})")
    return "\n".join(lines) or "(no complete ladder measured)"


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f} ms"


def floors_text(recs: List[dict], floors: List[dict]) -> str:
    """Per framework and size: the products alone against the time the bar allows a hand-written
    step (the framework's built-in x 1.25; for JAX the fastest built-in / 0.8), every number
    from the records."""
    table, lines = rung_table(recs), []
    for f in sorted(floors, key=lambda f: (f["device"], f["hidden"], f["framework"])):
        fw, at = f["framework"], where(f["device"], f["hidden"])
        if f.get("status") != S.RAN or not f.get("median_s"):
            lines.append(f"- {at}: {NAMES[fw]}: products not measured ({f.get('error')})")
            continue
        here = {k[0]: rungs for k, rungs in table.items() if k[1:] == (f["device"], f["hidden"])}
        if fw == "jax":
            builtins = [r["builtin"] for r in here.values() if "builtin" in r]
            if not builtins:
                continue
            ref = min(builtins, key=lambda r: r["median_s"])
            whose = f"the fastest built-in's ({ref['framework']})"
            allowed, bar = ref["median_s"] / JAX_VS_FASTEST, f"{JAX_VS_FASTEST}x its speed"
        else:
            ref = here.get(fw, {}).get("builtin")
            if ref is None:
                continue
            whose = "the built-in's"
            allowed, bar = ref["median_s"] * SCRATCH_BOUND, f"{SCRATCH_BOUND}x its step"
        flops = step_flops("lstm", ref["vocab"], f["hidden"], ref["vocab"], ref["batch"],
                           ref["steps"], "train")
        text = (f"- {at}: {NAMES[fw]}: the products alone ({f['kernels']}) take "
                f"{ms(f['median_s'])} per step ({flops / f['median_s'] / 1e9:.0f} GFLOP/s), "
                f"{f['median_s'] / ref['median_s']:.2f}x {whose} whole step of "
                f"{ms(ref['median_s'])}; ")
        if f["median_s"] >= allowed:
            text += (f"{bar} would be {ms(allowed)}: no hand-written rung that runs these products "
                     "one by one can meet the bar here.")
        else:
            text += (f"{bar} ({ms(allowed)}) leaves {ms(allowed - f['median_s'])} for every "
                     "other operator of a hand-written step.")
        lines.append(text)
    if not lines:
        return ""
    return "\n".join([f"Every hand-written rung runs at least {PRODUCTS}. Timed alone, as the rungs "
                      "are, in each framework's fastest way of running them, they bound how close "
                      "any hand-written rung can come (GFLOP/s by `rnnbench speed`'s count of a "
                      "training step, common/flops.py):", ""] + lines)


def summary_table(recs: List[dict]) -> str:
    """Every record: framework, device, size, rung, speed, ops, gap, compile, spread, parity."""
    rows = ["| framework | device | H | rung | tokens/s | x d2l | ops/step | gap closed | "
            "compile s | spread | parity (run dtype) | parity float64 |", "|---" * 12 + "|"]
    table = rung_table(recs)
    for r in recs:
        head = f"| {r['framework']} | {r['device']} | {r['hidden']} |"
        if not r.get("median_s"):
            rows.append(f"{head} {r['rung']} | {r.get('status', S.RUN_ERROR)}: {r.get('error')} "
                        "| | | | | | | |")
            continue
        d2l = table.get((r["framework"], r["device"], r["hidden"]), {}).get("d2l")
        speedup = r["tokens_per_s"] / d2l["tokens_per_s"] if d2l else None
        rows.append(f"{head} {r['label']} | {rate(r['tokens_per_s'])} | {num(speedup, '.2f')}"
                    f" | {num(r['ops_per_step'])} | {pct(r['gap_closed'])}"
                    f" | {num(r['compile_s'], '.2f')} | {pct(r['spread'])} | "
                    f"{num(r['parity_error'], '.1e')} | {num(r['parity64_error'], '.1e')} |")
    return "\n".join(rows)


def _setting(config: dict, recs: List[dict]) -> str:
    measured = [r for r in recs if r.get("median_s")]
    worst = max((r["parity_error"] for r in measured if r["parity_error"] is not None),
                default=None)
    worst64 = max((r["parity64_error"] for r in measured if r["parity64_error"] is not None),
                  default=None)
    devices = ", ".join(sorted({f"{r['framework']}: {r['device_name'] or r['device']}"
                                for r in measured}))
    threads = ", ".join(sorted({f"{r['framework']}: {r['threads']}" for r in measured}))
    return (f"Each rung trains d2l's character language model on one batch: one-hot inputs over "
            f"V={config['vocab']} characters, B={config['batch']}, T={config['steps']}, "
            f"{config['dtype']}; a step is forward, mean cross-entropy over the vocabulary, "
            f"backward, clipping to norm {config['clip']:g} and SGD at lr {config['lr']:g}, timed "
            f"as the median of at least {config['min_repeats']} steps after {config['warmup']} "
            f"warm-up steps, the first step (compile) reported apart. Each framework ran in its "
            f"own process on {config['threads']} pinned CPU(s) (threads seen: {threads}; "
            f"devices: {devices}). Every rung computes the same function: its loss, logits and "
            f"gradients differ from its framework's built-in by at most {num(worst, '.1e')} in "
            f"{config['dtype']} at the measured sizes and {num(worst64, '.1e')} in float64 on a "
            "small case.")


def not_run(config: dict, recs: List[dict]) -> List[str]:
    """A line for each framework asked for that left no record (not installed here)."""
    from common.registry import install_hint
    ran = {r["framework"] for r in recs}
    return [f"**{NAMES.get(fw, fw)}: not installed here** (`{install_hint(fw)}`), so its "
            "ladder is missing below." for fw in config.get("frameworks", ()) if fw not in ran]


def markdown(config: dict, recs: List[dict], floors: List[dict] = ()) -> str:
    """The whole `why-gluon-is-faster.md`: Gluon's answer first, then the other frameworks."""
    table = rung_table(recs)
    parts = ["# Why does Gluon's concise LSTM train faster than d2l's scratch one?", "",
             "d2l's exercise on the concise RNN asks why the built-in layer is faster. This page "
             "answers it by measurement (`rnnbench explain`): d2l's scratch LSTM is changed one "
             "thing at a time until it is the framework's built-in, and every rung is timed.", "",
             _setting(config, recs), ""]
    parts += [f"{line}\n" for line in not_run(config, recs)]
    order = sorted(table, key=lambda k: (k[0] != "mxnet", k[1], k[2], k[0]))
    for fw, device, hidden in order:
        title = "The answer: MXNet Gluon" if fw == "mxnet" else NAMES[fw]
        rungs = table[(fw, device, hidden)]
        parts += [f"## {title}, {where(device, hidden)}", "", answer(fw, rungs), "",
                  rungs_table(rungs), ""]
    parts += ["## Against the speed bars", "", requirements(recs), ""]
    floor = floors_text(recs, list(floors))
    if floor:
        parts += ["## The floor under the hand-written rungs", "", floor, ""]
    parts += ["## Every record", "", summary_table(recs), "", "## Code paths", ""]
    seen = {}
    for r in recs:
        if r.get("code_path"):
            seen.setdefault((r["framework"], r["device"], r["rung"]), r)
    parts += [f"- {fw} {device} {r['label']}: {r['code_path']}"
              for (fw, device, _), r in seen.items()]
    return "\n".join(parts) + "\n"


@optional_chart
def plot(recs: List[dict], path: Path) -> Path:
    """One panel per framework: each rung's speed over its built-in's (so sizes share a linear
    axis), one bar per device and size, labelled with its tokens/s."""
    from bench.core.plots import _pyplot, save_png

    plt = _pyplot()
    table = rung_table(recs)
    frameworks = list(dict.fromkeys(fw for fw, _, _ in table))
    series = sorted({(d, h) for _, d, h in table})
    panels = max(len(frameworks), 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    for ax, fw in zip(axes[0], frameworks):
        names = [n for n in RUNG_ORDER if any(n in table.get((fw, *s), {}) for s in series)]
        height = 0.8 / len(series)
        for i, (device, hidden) in enumerate(series):
            rungs = table.get((fw, device, hidden), {})
            if "builtin" not in rungs:
                continue
            base = rungs["builtin"]["tokens_per_s"]
            ks = [k for k, n in enumerate(names) if n in rungs]
            ys = [k + (i - (len(series) - 1) / 2) * height for k in ks]
            xs = [rungs[names[k]]["tokens_per_s"] / base for k in ks]
            ax.barh(ys, xs, height, label=where(device, hidden))
            for y, x, k in zip(ys, xs, ks):
                ax.text(x, y, f" {rate(rungs[names[k]]['tokens_per_s'])}", va="center",
                        fontsize=7)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(names)), [RUNG_INFO[n].label for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("training speed / built-in's (labels: tokens/s)")
        ax.set_title(NAMES[fw])
        ax.margins(x=0.25)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("From d2l's scratch LSTM to the built-in, one change at a time")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return Path(path)


def write_all(out: Path, config: dict, recs: List[dict], floors: List[dict] = ()) -> None:
    """why-gluon-is-faster.md and explain.png in `out` (explain.json is
    bench/explain/runner.py's)."""
    atomic.write_text(Path(out) / "why-gluon-is-faster.md", markdown(config, recs, floors),
                         overwrite=True)
    plot(recs, Path(out) / "explain.png")
