"""jax_impl's language model: what only JAX has (the shared tests: test_lm_backends.py)."""
import numpy as np
import pytest

from conftest import backend_or_skip
from common.params import init_lm_params
from test_lm_backends import V, adam_trained_builtin_and_scratch, build, case, make_cfg

BACKEND = "jax"
IMPL_IDS = [f"{BACKEND}-scratch", f"{BACKEND}-builtin"]


@pytest.mark.parametrize("cell_id", ["lstm", "gru_after"],
                         ids=[f"{BACKEND}-builtin-lstm", f"{BACKEND}-builtin-gru_after"])
def test_builtin_has_one_bias_per_gate(cell_id):
    """Flax's cells hold one array per canonical parameter (no duplicate recurrent-side biases,
    so nothing is masked), also after Adam steps (builtin follows scratch:
    test_lm_backends.test_builtin_follows_scratch_under_adam)."""
    _, builtin, trainers = adam_trained_builtin_and_scratch(BACKEND, cell_id)
    params = trainers[1].params()
    assert len(builtin.params) == len(params)
    assert sum(name.endswith("/bias") for name in builtin.params) == sum(
        key.split(".")[-1].startswith("b_") for key in params if key != "b_q")


@pytest.mark.parametrize("impl", ["scratch", "builtin"], ids=IMPL_IDS)
def test_steps_reuse_one_executable(impl):
    """Every step after the first, and a second trainer of the same cfg with other rates, runs
    the cached `train_step` executable: no retracing per step."""
    cfg, params, ids, targets, state = case(impl, "lstm", "onehot", 1)
    be, model = build(BACKEND, cfg, params)
    from jax_impl.trainer import train_step
    trainer = be.make_trainer(model, "sgd", lr=0.1, clip=1.0)
    _, carried = trainer.step(ids, targets, None)
    compiled = train_step._cache_size()
    trainer.step(ids, targets, carried)
    be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", lr=0.3, clip=2.0).step(
        ids, targets, state)
    assert train_step._cache_size() == compiled


def test_out_of_range_token_ids_are_refused():
    """JAX would clamp them silently; the adapter refuses them."""
    be = backend_or_skip(BACKEND)
    scratch = make_cfg("scratch", "lstm")
    with pytest.raises(ValueError, match="token ids"):
        be.lm_forward(be.build_lm(scratch, init_lm_params(scratch)), np.full((1, 2), V))
