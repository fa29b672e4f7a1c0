"""The backend registry: finds `torch_impl`, `mxnet_impl` and `jax_impl` by name, lazily.

Nothing here imports a framework until `get_backend` is called.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Dict, Tuple

from .errors import BackendUnavailable, NotSupported, UnknownBackend

# name -> (package, extra to install, top-level modules the package needs)
BACKENDS: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "torch": ("torch_impl", "torch", ("torch",)),
    "mxnet": ("mxnet_impl", "mxnet", ("mxnet",)),
    "jax": ("jax_impl", "jax", ("jax", "flax", "optax")),
}

_cache = {}


def backend_names():
    return tuple(BACKENDS)


def _entry(name: str):
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownBackend(
            f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}") from None


def missing_modules(name: str):
    """Top-level modules the backend needs that are not installed (no import happens)."""
    return [m for m in _entry(name)[2] if importlib.util.find_spec(m) is None]


def is_available(name: str) -> bool:
    return not missing_modules(name)


def install_hint(name: str) -> str:
    return f"pip install 'rnnbench[{_entry(name)[1]}]'"


def chosen_backends(asked=None, verb: str = "rnnbench", say=print) -> list:
    """The backends asked for, or every installed one (saying which are left out and how to
    install them); a verb with none to run is told what to install."""
    if asked:
        return list(asked)
    missing = [b for b in BACKENDS if not is_available(b)]
    for name in missing:
        say(f"{verb}: skipping {name}, not installed ({install_hint(name)})")
    present = [b for b in BACKENDS if b not in missing]
    if not present:
        raise no_framework_installed()
    return present


def no_framework_installed() -> BackendUnavailable:
    """The error of a verb that found none of the frameworks installed."""
    return BackendUnavailable("no framework is installed: pip install 'rnnbench[torch]' "
                              "(or mxnet, jax)")


def get_module(name: str, module: str):
    """Backend `name`'s submodule `module` (e.g. "adapter", "ladder", "seq2seq"), imported lazily.

    Feature modules beyond the layer and the LM (the fastai ladder, seq2seq) are reached this way,
    so each lives in its own file of the mirrored packages.
    """
    package, extra, _ = _entry(name)
    key = (name, module)
    if key in _cache:
        return _cache[key]
    missing = missing_modules(name)
    if missing:
        raise BackendUnavailable(
            f"backend {name!r} needs {', '.join(missing)}, which is not installed: "
            f"run {install_hint(name)}")
    try:
        _cache[key] = importlib.import_module(f"{package}.{module}")
    except ImportError as exc:
        if getattr(exc, "name", None) == f"{package}.{module}":
            raise NotSupported(f"backend {name!r} has no {module!r} module ({package}/{module}.py)") from exc
        raise BackendUnavailable(
            f"backend {name!r} could not be imported ({exc}): run {install_hint(name)}") from exc
    return _cache[key]


def get_backend(name: str):
    """The adapter object of backend `name` (its package's `adapter.BACKEND`)."""
    return get_module(name, "adapter").BACKEND
