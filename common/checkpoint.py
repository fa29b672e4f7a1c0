"""Parameter files: safetensors (written now) and `.npz` (read too, as older runs wrote them).

A safetensors file holds the arrays, the JSON `meta` under the `rnnbench` header entry and a
SHA-256 of the arrays under `sha256`, so a damaged or edited file is told apart from a good one.
Every read is checked: a missing, empty, truncated, corrupted or doctored file, a directory, or
arrays that are NaN or infinite raise a one-line `DataError` naming the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from . import atomic
from .errors import DataError

Params = Dict[str, np.ndarray]
META_KEY, DIGEST_KEY = "rnnbench", "sha256"
SUFFIXES = (".safetensors", ".npz")


def nonfinite_keys(params: Params) -> List[str]:
    """Keys of the arrays holding a NaN or an infinity, sorted."""
    return sorted(k for k, v in params.items() if not np.isfinite(np.asarray(v)).all())


def digest(params: Params) -> str:
    """SHA-256 over the keys, dtypes, shapes and bytes of the arrays, in key order."""
    h = hashlib.sha256()
    for key in sorted(params):
        a = np.ascontiguousarray(params[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _encode(path: str, arrays: Params, meta: dict) -> bytes:
    if path.endswith(".safetensors"):
        from safetensors.numpy import save
        header = {META_KEY: json.dumps(meta), DIGEST_KEY: digest(arrays)}
        return save(arrays, metadata=header)
    if "__meta__" in arrays:
        raise ValueError("'__meta__' is reserved for metadata")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return buffer.getvalue()


def save_params(path, params: Params, meta: dict = None, overwrite: bool = False,
                require_finite: bool = False) -> str:
    """Write params and a JSON `meta` dict atomically (mode 0644); refuse to overwrite unless
    asked. The format follows the suffix: `.safetensors`, else `.npz` (added when missing).
    `require_finite`: refuse arrays holding NaN or inf, so a good file is never replaced."""
    path = os.fspath(path)
    if not path.endswith(SUFFIXES):
        path += ".npz"
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (or --overwrite) to replace it")
    arrays = {k: np.ascontiguousarray(v) for k, v in params.items()}
    bad = nonfinite_keys(arrays) if require_finite else []
    if bad:
        raise DataError(f"not writing {path}: {', '.join(bad[:3])} hold NaN or inf values")
    atomic.write_bytes(path, _encode(path, arrays, meta or {}), overwrite=True)
    return path


def _decode_npz(data: bytes) -> Tuple[Params, dict]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        params = {k: npz[k] for k in npz.files if k != "__meta__"}
        meta = json.loads(bytes(npz["__meta__"]).decode()) if "__meta__" in npz.files else {}
    return params, meta


def _decode_safetensors(data: bytes) -> Tuple[Params, dict]:
    from safetensors.numpy import load
    params = load(data)
    header = _safetensors_header(data)
    meta = json.loads(header.get(META_KEY, "{}"))
    if DIGEST_KEY in header and header[DIGEST_KEY] != digest(params):
        raise ValueError("its arrays do not match the SHA-256 recorded when it was written "
                         "(damaged or edited)")
    return params, meta


def _safetensors_header(data: bytes) -> dict:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__") or {}


def _check_readable(path: Path) -> bytes:
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a checkpoint file: give the "
                        "checkpoint.safetensors (or checkpoint.npz) inside it")
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file; check the path")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path} is empty: not a checkpoint (was the run stopped while it "
                        "was copied?)")
    return data


def load_params(path) -> Tuple[Params, dict]:
    """(params, meta) of a file written by `save_params`, checked (see the module doc)."""
    path = Path(path)
    data = _check_readable(path)
    decode = _decode_npz if data[:2] == b"PK" else _decode_safetensors
    try:
        params, meta = decode(data)
    except Exception as exc:  # every library's own error for a damaged file: one line here
        what = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path} is damaged or not a checkpoint ({what}); use another "
                        "checkpoint or train again") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} has metadata that is not a JSON object: it was edited or damaged")
    return params, meta


def check_finite(path, params: Params) -> None:
    """A DataError naming the file when any array holds NaN or inf."""
    bad = nonfinite_keys(params)
    if bad:
        raise DataError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}): it is "
                        "not a usable model; use an earlier checkpoint or train with lower --lr")
