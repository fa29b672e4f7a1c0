"""Typed results on disk: JSON written atomically (`common.atomic`) that never silently
overwrites, JSON read back with a named error, run directories."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path

from common import atomic
from common.errors import DataError


def _default(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):          # NumPy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_json(path, obj, overwrite: bool = False) -> Path:
    """Serialise dataclasses/NumPy values to indented JSON, atomically."""
    return atomic.write_text(path, json.dumps(obj, indent=1, default=_default) + "\n", overwrite)


def read_json(path, what: str = "a results file"):
    """The JSON in `path`; a missing, unreadable or invalid file is a DataError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not {what}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (expected {what})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): it is damaged or not {what}; "
                        "write it again") from None



def check_new_dir(out, held: str = "") -> None:
    """Refuse, before any work, an `out` that is a file or a directory already holding files:
    no run replaces another's results. `held`: what to say when it holds a run (how to go on)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory: choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(held or f"{out} is not empty; choose a new or empty directory "
                              "for --out (results are never replaced)")


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


def out_dir(out, prefix: str) -> Path:
    """`--out` as given, else a fresh `rnnbench-results/<prefix>-*` directory (`new_run_dir`)."""
    return Path(out) if out else new_run_dir(prefix=prefix)
