"""The speed page and the why-is-the-built-in-faster page under `docs/`, rendered from the
records of `rnnbench speed` and `rnnbench explain` under `docs/results/`."""
from __future__ import annotations

from pathlib import Path

from bench.core import records
from bench.pages.results import Page, demote, rebase

D2L_RUN = "speed-cpu-d2l"
JAX_CURRENT_RUN = "speed-cpu-d2l-jax-current"     # the same grid, JAX only, the current stack
GRID_RUN = "speed-cpu"


def machine_line(recs) -> str:
    envs = [r for r in recs if getattr(r, "kind", "") == "env"]
    steps = [r for r in recs if getattr(r, "kind", "") == "step"]
    versions = {k: v for e in envs for k, v in e.versions.items() if v and k in
                ("torch", "mxnet", "jax", "jaxlib", "flax")}
    device = steps[0].device_name if steps else "?"
    threads = steps[0].case.threads if steps else "?"
    return (f"Measured on {device}, {threads} threads per framework; "
            + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")


def fastest(recs, hidden: int, cell: str = "lstm"):
    """{framework: (impl, tokens/s)} of the fastest training step at d2l's sizes."""
    from bench.speed.bars import train_rates
    best = {}
    for (h, be, impl, c), r in train_rates(recs).items():
        if h == hidden and c == cell and r.tokens_per_s > best.get(be, ("", 0.0))[1]:
            best[be] = (impl, r.tokens_per_s)
    return best


def jax_versions(d2l, current) -> str:
    """JAX's training tokens/s in the complete stack's run and the current stack's, case by
    case, and the JAX-against-the-fastest-built-in bar with the current release."""
    from bench.speed.bars import JAX_VS_FASTEST, train_rates
    old, new = train_rates(d2l), train_rates(current)
    version = lambda rates: next((r.versions.get("jax") for r in rates.values()), "?")
    va, vb = version({k: v for k, v in old.items() if k[1] == "jax"}), version(new)
    rows = [f"| H | impl | cell | jax {va} | jax {vb} | ratio |", "|---|---|---|---|---|---|"]
    for key in sorted(k for k in new if k in old):
        a, b = old[key].tokens_per_s, new[key].tokens_per_s
        rows.append(f"| {key[0]} | {key[2]} | {key[3]} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    lines = []
    for hidden in sorted({k[0] for k in new}):
        fast = new.get((hidden, "jax", "fast", "lstm"))
        builtins = [r for k, r in old.items() if k[0] == hidden and k[2:] == ("builtin", "lstm")
                    and k[1] != "jax"] + [r for k, r in new.items()
                                          if k[0] == hidden and k[2:] == ("builtin", "lstm")]
        if fast and builtins:
            best = max(builtins, key=lambda r: r.tokens_per_s)
            ratio = fast.tokens_per_s / best.tokens_per_s
            lines.append(f"- H={hidden}, JAX {vb} fast LSTM / fastest built-in LSTM "
                         f"({best.case.backend}): {ratio:.2f} (needs >= {JAX_VS_FASTEST}: "
                         f"{'met' if ratio >= JAX_VS_FASTEST else 'NOT met'})")
    return "\n".join(rows) + "\n\n" + "\n".join(lines)


def render_speed(results: Path) -> Page:
    from bench.speed import bars as speed_bars
    from bench.speed import records as rec, tables
    d2l = rec.read(results / D2L_RUN / rec.FILENAME)
    judged, floors = speed_bars.bars(d2l), speed_bars.floor_table(d2l)
    grid = rec.read(results / GRID_RUN / rec.FILENAME)
    images = "".join(f"![{mode} throughput](results/{D2L_RUN}/speed-cpu-{mode}.png)\n\n"
                     for mode in ("train", "infer")
                     if (results / D2L_RUN / f"speed-cpu-{mode}.png").exists())
    body = [
        "# Speed: tokens per second, scratch, fast and built-in", "",
        "`rnnbench speed --grid d2l --bare-loop --out DIR`: d2l's sizes (B=32, T=35, V=28; "
        "H=256 and 1024), every framework × implementation × cell, training (forward, "
        "cross-entropy, backward, d2l's clipping, SGD) and inference, each framework in its own "
        "process with the same thread count, warmed up, synchronised, compile time apart. In "
        "brackets: the step's GFLOP/s (matrix products, backward = 2x forward) as a share of "
        "the best large fp32 GEMM any framework reached on the machine. "
        + machine_line(d2l) + f" Every record, with its spread and code path: "
        f"[results/{D2L_RUN}/report.md](results/{D2L_RUN}/report.md).", "",
        tables.throughput_tables(d2l), "", images,
        "## The bars for `fast`", "",
        "Ratios of training tokens/s from the same run; spreads are the inter-quartile range "
        "over the median of the two timings (how to read them: [performance](performance.md)).",
        "", speed_bars.as_markdown(judged), "",
        *([f"The floor under each `fast` step (its products alone, timed as the step is):\n\n"
           f"{floors}\n"] if floors else []),
        "## The current JAX release", "",
        f"The same grid for JAX alone on the current stack (NumPy 2, no MXNet), run right after "
        f"on the same machine (`rnnbench speed --grid d2l --backends jax`; "
        f"[results/{JAX_CURRENT_RUN}/report.md](results/{JAX_CURRENT_RUN}/report.md)). "
        "Training tokens/s:", "",
        jax_versions(d2l, rec.read(results / JAX_CURRENT_RUN / rec.FILENAME)), "",
        "## What the harness adds", "",
        "The harness's figure beside the same step timed by hand and a plain PyTorch loop:", "",
        tables.bare_loop_table(d2l), "",
        "## The full grid (an earlier machine, before `fast` existed)", "",
        "`rnnbench speed --bare-loop` on the default grid (d2l's sizes plus sweeps over H, T "
        "and B). Its `jax/scratch` column ran what is now `jax/fast`. " + machine_line(grid) +
        f" Records and charts: [results/{GRID_RUN}/report.md](results/{GRID_RUN}/report.md). "
        "The GEMM rates the shares are taken against:", "", tables.gemm_table(grid), ""]
    best = fastest(d2l, 256)
    head = ("LSTM training at d2l's sizes (H=256), fastest per framework: "
            + ", ".join(f"{be} {impl} {tables.rate_text(tps)} tokens/s"
                        for be, (impl, tps) in sorted(best.items(), key=lambda x: -x[1][1]))
            + f" ({sum(b.met for b in judged)} of {len(judged)} "
              f"bars for `fast` met)")
    return "\n".join(body), head


def render_why(results: Path) -> Page:
    from bench.explain import report as explain_report
    doc = records.read_json(results / "explain-cpu/explain.json", "an explain record")
    text = explain_report.markdown(doc["config"], doc["records"], doc.get("floors", []))
    title, _, rest = text.partition("\n")
    body = [title, "", "Reproduce: `rnnbench explain --budget 2 --out DIR`; the record: "
            "[results/explain-cpu/explain.json](results/explain-cpu/explain.json).",
            "", rebase(rest, "results/explain-cpu/").lstrip("\n"),
            "![every rung, tokens/s](results/explain-cpu/explain.png)", ""]
    rungs = explain_report.rung_table(doc["records"])
    key = next((k for k in sorted(rungs) if k[0] == "mxnet" and k[2] == 256), None)
    head = "d2l's scratch LSTM turned into the built-in one change at a time, every rung timed"
    if key:
        r = rungs[key]
        if "builtin" in r and "d2l" in r:
            head = (f"Gluon's built-in LSTM trains {r['builtin']['tokens_per_s'] / r['d2l']['tokens_per_s']:.1f}x "
                    f"as fast as d2l's scratch LSTM at H=256, running "
                    f"{r['builtin']['ops_per_step']:.1f} operators per time step where the "
                    f"scratch loop runs {r['d2l']['ops_per_step']:.0f}")
    return "\n".join(demote(b, 0) for b in body), head
