"""PNG charts (matplotlib, headless), written atomically."""
from __future__ import annotations

from pathlib import Path


def available() -> bool:
    """Whether matplotlib can be imported (a bare GPU box may lack it: charts are then skipped)."""
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


def optional_chart(draw):
    """`draw(...)`, or None (said once) where matplotlib is not installed: the report's tables
    and records do not depend on it."""
    import functools

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        if available():
            return draw(*args, **kwargs)
        if not _said:
            _said.append(True)
            print("charts skipped: matplotlib is not installed (pip install matplotlib)")
        return None
    return wrapper


_said = []


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path) -> Path:
    """A matplotlib figure as PNG, written atomically with mode 0644 (`common.atomic`)."""
    from common import atomic
    return atomic.save_figure(fig, path, dpi=100, format="png")


def plot_perplexity(log, path: Path) -> Path:
    """Train (and validation) perplexity against epoch, log scale."""
    plt = _pyplot()
    epochs = [e.epoch for e in log.epochs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [e.train_ppl for e in log.epochs], label="train")
    if any(e.val_ppl is not None for e in log.epochs):
        ax.plot(epochs, [e.val_ppl for e in log.epochs], label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    model = log.model
    ax.set_title(f"{log.backend}/{model['impl']} {model['cell']} H={model['hidden_size']}"
                 f" L={model['num_layers']} on {log.corpus['name']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return Path(path)
