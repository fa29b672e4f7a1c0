"""The files of a training run directory (`rnnbench train --out`), named once for training,
resuming and generation."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

CHECKPOINT = "checkpoint.safetensors"
OLD_CHECKPOINT = "checkpoint.npz"       # written before safetensors; still read
LOG = "train_log.json"
GENERATED = ("generated", "downloaded")  # LMData.source values that are not a path


def find_checkpoint(out: Path) -> Optional[Path]:
    """The run directory's checkpoint (safetensors, else an older `.npz`), or None."""
    for name in (CHECKPOINT, OLD_CHECKPOINT):
        if (Path(out) / name).is_file():
            return Path(out) / name
    return None
