"""The ladder's table and chart: validation accuracy per model and backend beside fastbook's
figure and the "always predict 'thousand'" baseline, under a title that names the dtype. Input:
`LadderRecord`s as dicts (bench/fastbook/runner.py, or ladder.json's `records`; one without `dtype`, from
before `--dtype`, ran in float32)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from common import ladder as L


def _by_model(recs: List[dict]) -> Dict[int, Dict[str, dict]]:
    table: Dict[int, Dict[str, dict]] = {}
    for r in recs:
        table.setdefault(r["model"], {})[r["backend"]] = r
    return table


def dtypes(recs: List[dict]) -> str:
    """The dtypes the records ran in, in order of first appearance: "float32", or e.g.
    "float32, float64" for a mixed list."""
    return ", ".join(dict.fromkeys(r.get("dtype", "float32") for r in recs)) or "float32"


def title(recs: List[dict]) -> str:
    return f"fastbook ch. 12 on Human Numbers: final validation accuracy ({dtypes(recs)})"


def _cell(rec: dict) -> str:
    """`0.503 (+0.9)`: accuracy and its distance to fastbook's figure in points."""
    delta = 100 * (rec["accuracy"] - rec["fastbook_accuracy"])
    return f"{rec['accuracy']:.3f} ({delta:+.1f})"


def markdown_table(recs: List[dict]) -> str:
    """A title naming the dtype, then the table. Rows: model (and the baseline); columns:
    fastbook, each backend (points vs fastbook), and the spread between backends in points."""
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    head = "| model | fastbook | " + " | ".join(backends) + " | spread (points) |"
    rows = [f"### {title(recs)}", "", head, "|---" * (len(backends) + 3) + "|"]
    for model, cells in sorted(_by_model(recs).items()):
        spec = L.get_spec(model)
        accs = [c["accuracy"] for c in cells.values()]
        spread = f"{100 * (max(accs) - min(accs)):.1f}" if len(accs) > 1 else "—"
        epochs = next(iter(cells.values()))["epochs"]
        label = f"{spec.name}: {spec.summary} ({epochs} ep, lr {spec.lr_max:g})"
        rows.append(f"| {label} | {spec.fastbook_accuracy:.3f} | "
                    + " | ".join(_cell(cells[b]) if b in cells else "—" for b in backends)
                    + f" | {spread} |")
    rows.append(f"| always '{L.BASELINE_TOKEN}' (3-token validation targets) | "
                f"{L.BASELINE_ACCURACY:.3f} | " + " | ".join("" for _ in backends) + " | |")
    return "\n".join(rows)


def plot_ladder(recs: List[dict], path: Path) -> Path:
    """Grouped bars of validation accuracy per model and backend, fastbook's figure as a black
    tick on each group, the baseline as a dashed line."""
    from bench.core.plots import _pyplot, save_png

    plt = _pyplot()
    models = _by_model(recs)
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    width = 0.8 / max(len(backends), 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, backend in enumerate(backends):
        xs = [k for k, m in enumerate(models) if backend in models[m]]
        ys = [models[m][backend]["accuracy"] for m in models if backend in models[m]]
        ax.bar([x - 0.4 + width * (i + 0.5) for x in xs], ys, width, label=backend)
    for k, model in enumerate(models):
        ax.hlines(L.get_spec(model).fastbook_accuracy, k - 0.45, k + 0.45, colors="black",
                  linewidth=2, label="fastbook" if k == 0 else None)
    ax.axhline(L.BASELINE_ACCURACY, color="gray", linestyle="--",
               label=f"always '{L.BASELINE_TOKEN}'")
    ax.set_xticks(range(len(models)), [L.get_spec(m).name for m in models])
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title(recs))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return Path(path)
