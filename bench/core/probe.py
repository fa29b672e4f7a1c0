"""Ask each backend about itself in its own subprocess.

Importing MXNet silently drops PyTorch to one thread (docs/performance.md), so each framework is
described by a fresh interpreter: `python -m bench.core.probe NAME` prints the adapter's `info()`
as JSON.
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

from common.registry import BACKENDS, backend_names, install_hint, missing_modules

DISTRIBUTIONS = {"torch": ("torch",), "mxnet": ("mxnet",), "jax": ("jax", "jaxlib", "flax", "optax")}


def versions(name: str) -> dict:
    """Installed versions of the backend's distributions, from metadata (no import)."""
    out = {}
    for dist in DISTRIBUTIONS[name]:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def probe(name: str, timeout: float = 120.0) -> dict:
    """The backend's `info()` from a subprocess, or a record of why it is unavailable."""
    record = {"backend": name, "package": BACKENDS[name][0], "versions": versions(name)}
    missing = missing_modules(name)
    if missing:
        record.update(available=False, error=f"{', '.join(missing)} not installed: {install_hint(name)}")
        return record
    proc = subprocess.run([sys.executable, "-m", "bench.core.probe", name], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        record.update(available=False, error=f"import failed: {last}")
        return record
    record.update(available=True, info=json.loads(proc.stdout.strip().splitlines()[-1]))
    return record


def probe_all() -> list:
    return [probe(name) for name in backend_names()]


def _main(name: str) -> None:
    from common.registry import get_backend
    print(json.dumps(get_backend(name).info(), default=str))


if __name__ == "__main__":
    _main(sys.argv[1])
