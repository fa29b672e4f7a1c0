"""Typed results on disk: atomic JSON writes that never silently overwrite, run directories."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from pathlib import Path


def _default(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):          # NumPy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_atomic(path, text: str, overwrite: bool = False) -> Path:
    """Write `text` to `path` through a temporary file and `os.replace`; refuse to overwrite."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path, obj, overwrite: bool = False) -> Path:
    """Serialise dataclasses/NumPy values to indented JSON, atomically."""
    return write_atomic(path, json.dumps(obj, indent=1, default=_default) + "\n", overwrite)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def new_run_dir(root="rnnbench-results", prefix="run") -> Path:
    """A fresh directory `root/prefix-YYYYmmdd-HHMMSS[-n]` that did not exist before."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    for n in range(1000):
        candidate = root / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {root}")
