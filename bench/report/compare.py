"""`rnnbench report DIR DIR ...`: the speed records of several runs (a laptop, this CPU, a GPU
box) side by side, one column per machine and device, with speed-up charts.

A *column* is one (run directory, device) pair, named by the device the records name (CPU model
or GPU name) and the run directory; its frameworks' versions are listed once in the machines
table. Rows are cases without their device and thread count, so the same configuration lines up
across machines. Speed-ups are against the first column.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Tuple

from bench.speed import records as rec
from bench.speed.tables import _grid, cell_label, impl_label, rate_text, steps
from common import atomic
from common.errors import RnnbenchError

COMPARE = "compare.md"
Column = Tuple[str, str]   # (run label, device)


def run_label(directory: Path, taken: set) -> str:
    """The directory's own name, made unique among the runs compared."""
    label, n = directory.name or str(directory), 2
    while label in taken:
        label, n = f"{directory.name}-{n}", n + 1
    return label


def load_runs(directories) -> "OrderedDict[str, list]":
    """{run label: its speed records}; a directory without speed.jsonl is a one-line error."""
    runs = OrderedDict()
    for d in map(Path, directories):
        path = d / rec.FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"{d} holds no {rec.FILENAME}: give directories written by "
                                    "`rnnbench speed --out DIR` (or the main job's run-*)")
        runs[run_label(d, set(runs))] = rec.read(path)
    return runs


def row_key(case) -> tuple:
    """A case without its device and threads: the same configuration on any machine."""
    return (case.mode, case.hidden, case.batch, case.steps, case.vocab, case.dtype,
            cell_label(case), impl_label(case))


def columns(runs) -> "OrderedDict[Column, Dict[tuple, rec.StepRecord]]":
    """{(run, device): {row key: step record}} in run order, CPU before GPU."""
    out = OrderedDict()
    for run, records in runs.items():
        mine = steps(records)
        for device in sorted({r.case.device for r in mine}, key=lambda d: (d != "cpu", d)):
            out[(run, device)] = {row_key(r.case): r for r in mine if r.case.device == device}
    return out


def device_names(records, device: str) -> str:
    names = {r.device_name for r in steps(records) if r.case.device == device and r.device_name}
    return ", ".join(sorted(names)) or device


def machines_table(runs, cols) -> str:
    """Markdown: per column the device's name, the frameworks' versions and threads."""
    rows = [["column", "device", "frameworks", "threads"]]
    for run, device in cols:
        envs = [e for e in rec.latest(runs[run]).values() if e.kind == "env"]
        versions = "; ".join(", ".join(f"{k} {v}" for k, v in e.versions.items() if v)
                             for e in envs) or "?"
        threads = ", ".join(sorted({str(e.threads) for e in envs})) or "?"
        rows.append([f"{run}: {device}", device_names(runs[run], device), versions, threads])
    return _grid(rows, True)


def entry(r: Optional[rec.StepRecord], base: Optional[rec.StepRecord]) -> str:
    """`12.3k (4.1x)`: tokens/s and the speed-up over the first column; or a status."""
    if r is None:
        return ""
    if r.status != rec.OK:
        return r.status.lower()
    if base is None or base.status != rec.OK or base is r:
        return rate_text(r.tokens_per_s)
    return f"{rate_text(r.tokens_per_s)} ({r.tokens_per_s / base.tokens_per_s:.2g}x)"


def case_tables(cols) -> str:
    """One table per (mode, size, dtype): implementations x cells down, columns across."""
    labels = [f"{run}: {device}" for run, device in cols]
    keys = list(dict.fromkeys(k for by_key in cols.values() for k in by_key))
    groups = OrderedDict()
    for k in sorted(keys, key=lambda k: (k[0] != "train", k[1:6])):
        groups.setdefault(k[:6], []).append(k)
    parts = []
    for (mode, H, B, T, V, dtype), ks in groups.items():
        first = next(iter(cols.values()))
        rows = [["impl", "cell", *labels]]
        rows += [[k[7], k[6], *(entry(by_key.get(k), first.get(k)) for by_key in cols.values())]
                 for k in ks]
        parts.append(f"**{mode}, H={H} B={B} T={T} V={V}, {dtype}: tokens/s (speed-up over "
                     f"{labels[0]})**\n\n" + _grid(rows, True))
    return "\n\n".join(parts)


def speedup_chart(cols, path: Path) -> Optional[Path]:
    """Bars of each column's speed-up over the first, per case measured everywhere (train)."""
    from bench.core.plots import available
    base, others = next(iter(cols.values())), list(cols.items())[1:]
    shared = [k for k in base if k[0] == "train" and base[k].status == rec.OK
              and all(c.get(k) is not None and c[k].status == rec.OK for _, c in others)]
    if not others or not shared or not available():
        return None
    from bench.core.plots import _pyplot
    from bench.core.plots import save_png
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(shared) * len(others)), 4.5))
    width = 0.8 / len(others)
    for i, ((run, device), by_key) in enumerate(others):
        ax.bar([j + i * width for j in range(len(shared))],
               [by_key[k].tokens_per_s / base[k].tokens_per_s for k in shared], width,
               color=f"C{i}", label=f"{run}: {device}")
    ax.set_xticks([j + (len(others) - 1) * width / 2 for j in range(len(shared))],
                  [f"{k[7]} {k[6]}\nH={k[1]} B={k[2]}" for k in shared], rotation=90, fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"speed-up over {next(iter(cols))[0]}: {next(iter(cols))[1]}")
    ax.set_title("training tokens/s, relative")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return Path(path)


def build(directories, out: Path) -> str:
    runs = load_runs(directories)
    cols = columns(runs)
    if not cols:
        raise RnnbenchError("no speed step records in " + ", ".join(map(str, directories)))
    lines = ["# rnnbench: machines side by side", "",
             "Runs: " + ", ".join(f"`{d}`" for d in directories) + ".", "",
             "### Machines", "", machines_table(runs, cols), "", "### Cases", "",
             case_tables(cols), ""]
    png = speedup_chart(cols, out / "compare-speedup.png")
    if png:
        lines += [f"![speed-up]({png.name})", ""]
    return "\n".join(lines)


def main(directories, out: Path) -> int:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = atomic.write_text(out / COMPARE, build(directories, out), overwrite=True)
    print(f"comparison of {len(directories)} runs: {path}")
    return 0
