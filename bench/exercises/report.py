"""The write-up of `rnnbench exercises`: one `exNN.json` record per exercise, per-framework PNG
panels, and `exercises.md` (section, question, command, table, answer)."""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Dict, List

from bench.core import records
from bench.core.repo import ROOT
from common import atomic



def fmt(value) -> str:
    """A number for prose and tables: 4 significant digits, integers with separators."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.2e}"


def repo_link(out: Path, path: str) -> str:
    """A markdown link to a repository file, relative to the output directory."""
    rel = os.path.relpath(ROOT / path, Path(out).resolve())
    return f"[`{path}`]({rel})"


def framework_plot(path: Path, panels: Dict[str, Dict[str, tuple]], xlabel: str, ylabel: str,
                   logx: bool = False, logy: bool = False) -> str:
    """One panel per framework, one line per label: `panels[framework][label] = (xs, ys)`.
    Returns the file name (written beside exercises.md)."""
    from bench.core.plots import _pyplot
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False,
                             sharey=True)
    for ax, (framework, lines) in zip(axes[0], panels.items()):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, [y if y is not None and y > 0 or not logy else float("nan") for y in ys],
                    marker="o", ms=3, label=label)
        ax.set_title(framework)
        ax.set_xlabel(xlabel)
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale("log" if logy else "linear")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=90)
    plt.close(fig)
    return Path(path).name


def table(rows: List[dict]) -> str:
    """A markdown table of `rows` (columns from the first row, then any new ones)."""
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def command(number: int, quick: bool, backends) -> str:
    every = set(backends) == {"torch", "mxnet", "jax"}
    extra = "" if every else f" --backends {' '.join(backends)}"
    return f"rnnbench exercises --only {number}{' --quick' if quick else ''}{extra}"


def write_record(out: Path, ex, result, settings, backends) -> Path:
    """`exNN.json`: the question, settings, rows, answer and status of one exercise."""
    return records.write_json(Path(out) / f"ex{ex.number:02d}.json", {
        "kind": "exercise", "number": ex.number, "section": ex.section, "question": ex.question,
        "command": command(ex.number, settings.name == "quick", backends),
        "settings": dataclasses.asdict(settings), "backends": list(backends),
        "status": result.status, "seconds": result.seconds, "rows": result.rows,
        "answer": result.answer, "plots": result.plots, "records": result.records},
        overwrite=True)


def earlier_results(out: Path, exercises, settings) -> dict:
    """Results recorded in `out` by earlier runs with the same sizes (`exNN.json`), so that a
    run of a few exercises (`--only`) keeps the others on the page."""
    from bench.exercises.registry import Result
    found = {}
    for path in sorted(Path(out).glob("ex[0-9][0-9].json")):
        rec = records.read_json(path)
        if rec.get("number") in exercises and rec.get("settings", {}).get("name") == settings.name:
            found[rec["number"]] = Result(rec["rows"], rec["answer"], rec["plots"],
                                          rec["records"], rec["status"], rec["seconds"])
    return found


def section(ex, result, settings, backends) -> str:
    parts = [f"## {ex.number}. {ex.section}", "", f"**Question.** {ex.question}", "",
             f"**Reproduce:** `{command(ex.number, settings.name == 'quick', backends)}` "
             f"({result.status}, {result.seconds:.1f} s)", ""]
    if result.rows:
        parts += [table(result.rows), ""]
    parts += [f"![exercise {ex.number}]({p})\n" for p in result.plots]
    parts += [f"**Answer.** {result.answer}", ""]
    return "\n".join(parts)


def write_markdown(out: Path, exercises, results, settings, backends, seconds: float) -> Path:
    label = ("QUICK run: small sizes, for checking the machinery; the numbers are not the books' "
             "settings" if settings.name == "quick" else "full run with the books' settings")
    head = [f"# d2l's RNN exercises, answered by measurement ({settings.name})", "",
            f"{label}. Frameworks: {', '.join(backends)}; implementation "
            f"`{settings.impl}` unless a table says otherwise; {len(results)} exercises, "
            f"{seconds:.0f} s of experiments in all. Sizes: {dataclasses.asdict(settings)}. Every number below is read "
            f"from this run's records (`exNN.json`). All of it: "
            f"`rnnbench exercises{' --quick' if settings.name == 'quick' else ''}`.", ""]
    body = [section(exercises[n], r, settings, backends) for n, r in results.items()]
    path = Path(out) / "exercises.md"
    atomic.write_text(path, "\n".join(head + body), overwrite=True)
    return path
