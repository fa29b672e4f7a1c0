"""The parity heat map: log10 max abs error of every pair, one panel per cell and dtype (PNG,
atomic)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

from bench.core import status as S
from bench.core.plots import _pyplot, optional_chart, save_png


@optional_chart
def parity_chart(matrices: Dict, path: Path) -> Optional[Path]:
    """The parity matrices (`bench.parity.tables.matrices`) as heat maps of log10 max abs error;
    blank where a pair was not supported."""
    if not matrices:
        return None
    plt = _pyplot()
    n = len(matrices)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    image = None
    for ax, ((cell, dtype), m) in zip(axes.flat, matrices.items()):
        labels = m["labels"]
        grid = [[float("nan")] * len(labels) for _ in labels]
        for (a, b), (status, err) in m["pairs"].items():
            if status in (S.PASS, S.FAIL):
                value = math.log10(max(err, 1e-17))
                i, j = labels.index(a), labels.index(b)
                grid[i][j] = grid[j][i] = value
        image = ax.imshow(grid, vmin=-17, vmax=-3, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"{cell} {dtype}", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.6, label="log10 max abs error")
    save_png(fig, path)
    plt.close(fig)
    return Path(path)
