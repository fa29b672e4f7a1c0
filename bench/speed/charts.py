"""PNG charts of the speed records: throughput bars and scaling curves (atomic)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from bench.core.plots import _pyplot, optional_chart, save_png
from bench.speed import records as rec
from bench.speed.grid import D2L_SIZES, sweep_axis
from bench.speed.tables import cell_label, impl_label, impl_order, steps

AXIS_NAMES = {"hidden": "hidden size H", "steps": "steps T", "batch": "batch B"}


def _ok(rows) -> list:
    return [r for r in rows if r.status == rec.OK]


def _size(case) -> tuple:
    return (case.hidden, case.batch, case.steps, case.vocab)


def _headline_sizes(rows) -> List[tuple]:
    """d2l's sizes when measured, else every size (at most four)."""
    present = list(dict.fromkeys(_size(r.case) for r in rows))
    d2l = [s for s in D2L_SIZES if s in present]
    return d2l or present[:4]


@optional_chart
def throughput_chart(records, device: str, mode: str, path: Path) -> Optional[Path]:
    """Bars of tokens/s per cell and implementation, one panel per headline size."""
    rows = [r for r in steps(records) if r.case.device == device and r.case.mode == mode]
    sizes = _headline_sizes(rows)
    if not _ok(rows):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4), squeeze=False)
    labels = impl_order(rows)
    for ax, size in zip(axes[0], sizes):
        mine = [r for r in rows if _size(r.case) == size]
        cells = list(dict.fromkeys(cell_label(r.case) for r in mine))
        width = 0.8 / max(len(labels), 1)
        for i, label in enumerate(labels):
            for j, cell in enumerate(cells):
                r = next((r for r in mine if impl_label(r.case) == label
                          and cell_label(r.case) == cell), None)
                x = j + (i - (len(labels) - 1) / 2) * width
                if r is not None and r.status == rec.OK:
                    ax.bar(x, r.tokens_per_s, width, color=f"C{i}",
                           label=label if j == 0 else None)
                elif r is not None:
                    ax.text(x, 0.02, "n/s" if r.status == rec.NOT_SUPPORTED else r.status[:3],
                            transform=ax.get_xaxis_transform(), ha="center", fontsize=7,
                            rotation=90)
        ax.set_xticks(range(len(cells)), cells)
        ax.set_ylabel("tokens / s")
        ax.set_title(f"{mode} on {device}: H={size[0]} B={size[1]} T={size[2]} V={size[3]}")
        ax.grid(True, axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_png(fig, path)
    plt.close(fig)
    return Path(path)


@optional_chart
def scaling_chart(records, axis: str, device: str, mode: str, path: Path) -> Optional[Path]:
    """Tokens/s against one swept size (log-log), a panel per cell, a line per implementation."""
    rows = [r for r in _ok(steps(records)) if r.case.device == device and r.case.mode == mode
            and axis in sweep_axis(r.case)]
    if len({getattr(r.case, axis) for r in rows}) < 2:
        return None
    plt = _pyplot()
    cells = list(dict.fromkeys(cell_label(r.case) for r in rows))
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 4), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for i, label in enumerate(impl_order(rows)):
            pts = sorted((getattr(r.case, axis), r.tokens_per_s) for r in rows
                         if cell_label(r.case) == cell and impl_label(r.case) == label)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        xs = sorted({getattr(r.case, axis) for r in rows})
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        ax.set_xlabel(AXIS_NAMES[axis])
        ax.set_ylabel("tokens / s")
        ax.set_title(f"{cell} {mode} on {device}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return Path(path)
