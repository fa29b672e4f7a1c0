"""Shared fixtures: seeded canonical parameters, inputs, states, and backend lookup."""
import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common.config import LayerSpec  # noqa: E402
from common.download import cache_dir  # noqa: E402
from common.errors import BackendUnavailable  # noqa: E402
from common.params import init_params  # noqa: E402
from common.registry import get_backend  # noqa: E402
from common.backend import random_state  # noqa: E402

# Small sizes keep finite differences cheap while every weight matters.
T, B, I, H = 4, 3, 5, 4

CELL_VARIANTS = [("rnn", "reset_after"), ("lstm", "reset_after"),
                 ("gru", "reset_after"), ("gru", "reset_before")]
CELL_IDS = ["rnn", "lstm", "gru_after", "gru_before"]


def shared_data_dir():
    """Where the real corpora live: $RNNBENCH_DATA, else the `data` folder of a `shared`
    directory beside the checkout (where a course or a team keeps them), else the download
    cache (`common.download`); a test whose corpus is in none skips and says so."""
    env = os.environ.get("RNNBENCH_DATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else cache_dir()


def backend_or_skip(name):
    """The adapter, or a skip that says which extra is missing."""
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


def make_spec(cell, variant, layers, bidirectional, input_size=I, hidden=H):
    return LayerSpec(cell, input_size, hidden, layers, bidirectional, variant)


@functools.lru_cache(maxsize=None)
def case_arrays(cell, variant, layers, bidirectional, seed=0):
    """(spec, params, X, state, G, G_state) in float64, the same for every backend."""
    spec = make_spec(cell, variant, layers, bidirectional)
    params = init_params(spec, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(T, B, I))
    state = random_state(spec, B, rng)
    G = rng.normal(size=(T, B, H * spec.num_directions))
    G_state = random_state(spec, B, rng, scale=1.0)
    return spec, params, X, state, G, G_state


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_jax_code():
    """Drop JAX's compiled executables after each test module. The suite compiles thousands of
    small XLA programs in one process; each keeps memory mappings for its machine code, and
    without this the process ran into the kernel's mapping limit (vm.max_map_count) and
    segfaulted inside XLA's compiler near the end of the run."""
    yield
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()
        import gc
        gc.collect()
