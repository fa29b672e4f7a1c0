"""jax_impl's language model and trainer against the NumPy reference (`reference.lm_forward`).

Every id names the combination: backend, impl, cell (GRU variant), input (one-hot or embedding),
layers, dtype, and whether the initial state is zero or random.
"""
import functools
import itertools

import jax
import numpy as np
import pytest

import reference
from conftest import CELL_IDS, CELL_VARIANTS, backend_or_skip
from common.backend import flatten_state, random_state
from common.config import LMConfig
from common.errors import NotSupported
from common.params import init_lm_params

BACKEND = "jax"
V, E, H, B, T = 7, 5, 4, 3, 4
VALUE_TOL = {"float64": 1e-10, "float32": 2e-5}
GRAD_TOL = 1e-6  # float64 against central differences
CELLS = dict(zip(CELL_IDS, CELL_VARIANTS))
INPUTS = {"onehot": None, "embed": E}
IMPL_IDS = [f"{BACKEND}-scratch", f"{BACKEND}-builtin"]


def make_cfg(impl, cell_id, inputs="onehot", layers=1, hidden=H, vocab=V):
    cell, variant = CELLS[cell_id]
    return LMConfig(cell, impl, vocab, hidden, layers, variant, INPUTS[inputs])


@functools.lru_cache(maxsize=None)
def case(impl, cell_id, inputs, layers, seed=0):
    """(cfg, float64 params, ids, targets, random state): the same for every backend."""
    cfg = make_cfg(impl, cell_id, inputs, layers)
    params = init_lm_params(cfg, seed=seed, dtype="float64", init="uniform")
    rng = np.random.default_rng(seed + 1)
    ids, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    return cfg, params, ids, targets, random_state(cfg.layer_spec, B, rng)


def build(cfg, params, dtype="float64"):
    """The JAX model, or (builtin reset_before) NotSupported checked and the test skipped."""
    be = backend_or_skip(BACKEND)
    if cfg.impl == "builtin" and cfg.cell == "gru" and cfg.gru_variant == "reset_before":
        with pytest.raises(NotSupported):
            be.build_lm(cfg, params, dtype)
        pytest.skip("reset_before is not a built-in GRU; NotSupported raised as documented")
    return be, be.build_lm(cfg, params, dtype)


def cast_state(state, dtype):
    return [tuple(np.asarray(a, dtype) for a in s) if isinstance(s, tuple) else np.asarray(s, dtype)
            for s in state]


def reference_loss(cfg, params, ids, targets, state):
    logits, finals = reference.lm_forward(cfg, params, ids, state)
    return reference.cross_entropy(logits, targets), finals


def numeric_grads(cfg, params, ids, targets, state):
    """Central differences of the reference loss with respect to every canonical parameter."""
    params = {k: v.copy() for k, v in params.items()}
    f = lambda: reference_loss(cfg, params, ids, targets, state)[0]
    return {k: reference.numeric_grad(f, params[k]) for k in params}


def _ids(axes):
    return [f"{BACKEND}-{i}-{c}-{x}-L{n}-{t}-{s}" for i, c, x, n, t, s in axes]


FORWARD_AXES = list(itertools.product(["scratch", "builtin"], CELL_IDS, list(INPUTS), [1, 2],
                                      ["float64", "float32"], ["zero", "state"]))


@pytest.mark.parametrize("impl,cell_id,inputs,layers,dtype,init", FORWARD_AXES,
                         ids=_ids(FORWARD_AXES))
def test_logits_and_loss_match_reference(impl, cell_id, inputs, layers, dtype, init):
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, layers)
    state = state if init == "state" else None
    be, model = build(cfg, params, dtype)
    logits, finals = be.lm_forward(model, ids, None if state is None else cast_state(state, dtype))
    want, want_finals = reference.lm_forward(cfg, params, ids, state)
    assert logits.shape == (B, T, V) and logits.dtype == np.dtype(dtype)
    np.testing.assert_allclose(logits, want, atol=VALUE_TOL[dtype], rtol=0)
    for got, ref in zip(flatten_state(finals), flatten_state(want_finals), strict=True):
        np.testing.assert_allclose(got, ref, atol=VALUE_TOL[dtype], rtol=0)
    loss, _, _ = be.lm_loss_grads(model, ids, targets,
                                  None if state is None else cast_state(state, dtype))
    assert isinstance(loss, float)
    assert abs(loss - reference.cross_entropy(want, targets)) < VALUE_TOL[dtype]


GRAD_CASES = [("scratch", "lstm", "embed", 2, "state"), ("builtin", "lstm", "embed", 2, "zero"),
              ("builtin", "gru_after", "onehot", 1, "state"),
              ("scratch", "gru_before", "onehot", 1, "state"),
              ("builtin", "rnn", "onehot", 2, "state")]


@pytest.mark.parametrize("impl,cell_id,inputs,layers,init", GRAD_CASES,
                         ids=[f"{BACKEND}-{i}-{c}-{x}-L{n}-float64-{s}"
                              for i, c, x, n, s in GRAD_CASES])
def test_loss_grads_match_finite_differences(impl, cell_id, inputs, layers, init):
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, layers)
    state = state if init == "state" else None
    be, model = build(cfg, params)
    loss, grads, _ = be.lm_loss_grads(model, ids, targets, state)
    want = numeric_grads(cfg, params, ids, targets, state)
    assert set(grads) == set(want)
    for key in want:
        np.testing.assert_allclose(grads[key], want[key], atol=GRAD_TOL, rtol=GRAD_TOL,
                                   err_msg=key)


def expected_update(params, grads, lr, clip, adam=False):
    """d2l's clipping then one SGD (or first Adam) step, by hand; also the norm clipped."""
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    scale = clip / norm if clip is not None and norm > clip else 1.0
    out = {}
    for key, p in params.items():
        g = grads[key] * scale
        step = g / (np.abs(g) + 1e-8) if adam else g  # Adam's first step: m/sqrt(v) = g/|g|
        out[key] = p - lr * step
    return out, norm


STEP_AXES = list(itertools.product(["scratch", "builtin"], ["rnn", "lstm", "gru_after"],
                                   ["clip_on", "clip_off"]))


@pytest.mark.parametrize("impl,cell_id,clipping", STEP_AXES,
                         ids=[f"{BACKEND}-{i}-{c}-embed-L2-float64-{k}" for i, c, k in STEP_AXES])
def test_sgd_step_equals_hand_computation(impl, cell_id, clipping):
    cfg, params, ids, targets, state = case(impl, cell_id, "embed", 2)
    be, probe = build(cfg, params)
    loss_want, grads, _ = be.lm_loss_grads(probe, ids, targets, state)
    clip = 0.05 if clipping == "clip_on" else 1e3
    want, norm = expected_update(params, grads, 0.5, clip)
    assert (norm > clip) == (clipping == "clip_on")
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", lr=0.5, clip=clip)
    loss, _ = trainer.step(ids, targets, state)
    assert isinstance(loss, float) and abs(loss - loss_want) < 1e-12
    got = trainer.params()
    for key in params:
        np.testing.assert_allclose(got[key], want[key], atol=1e-12, rtol=0, err_msg=key)


@pytest.mark.parametrize("impl", ["scratch", "builtin"], ids=IMPL_IDS)
def test_first_adam_step_equals_hand_computation(impl):
    cfg, params, ids, targets, state = case(impl, "lstm", "embed", 1)
    be, probe = build(cfg, params)
    _, grads, _ = be.lm_loss_grads(probe, ids, targets, state)
    want, _ = expected_update(params, grads, 0.01, None, adam=True)
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "adam", lr=0.01, clip=None)
    trainer.step(ids, targets, state)
    got = trainer.params()
    for key in params:
        assert not np.array_equal(got[key], params[key]) or not grads[key].any(), key
        np.testing.assert_allclose(got[key], want[key], atol=1e-12, rtol=0, err_msg=key)


@pytest.mark.parametrize("impl,cell_id", [("scratch", "lstm"), ("builtin", "lstm"),
                                          ("scratch", "gru_before"), ("builtin", "gru_after")],
                         ids=[f"{BACKEND}-scratch-lstm", f"{BACKEND}-builtin-lstm",
                              f"{BACKEND}-scratch-gru_before", f"{BACKEND}-builtin-gru_after"])
def test_state_from_step_feeds_back(impl, cell_id):
    """With lr=0 the second step's loss is the reference loss from the first step's state."""
    cfg, params, ids, targets, state = case(impl, cell_id, "onehot", 2)
    be, model = build(cfg, params)
    trainer = be.make_trainer(model, "sgd", lr=0.0, clip=1.0)
    _, carried = trainer.step(ids, targets, None)
    _, ref_finals = reference_loss(cfg, params, ids, targets, None)
    for got, want in zip(flatten_state(carried), flatten_state(ref_finals), strict=True):
        assert isinstance(got, jax.Array) and got.dtype == np.float64  # stays on the device
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-12, rtol=0)
    loss, _ = trainer.step(targets, ids, carried)
    want, _ = reference_loss(cfg, params, targets, ids, ref_finals)
    assert abs(loss - want) < 1e-12


@pytest.mark.parametrize("impl", ["scratch", "builtin"], ids=IMPL_IDS)
def test_sgd_losses_follow_reference_math(impl):
    """Three clipped SGD steps, state carried: per-step losses equal the NumPy reference's, whose
    gradients are central differences (the built-in trains the canonical model, one bias a gate)."""
    cfg, params, ids, targets, _ = case(impl, "gru_after", "onehot", 1)
    be, model = build(cfg, params)
    trainer = be.make_trainer(model, "sgd", lr=1.0, clip=0.5)
    ref_params, ref_state, state = dict(params), None, None
    for step in range(3):
        loss, state = trainer.step(ids, targets, state)
        want, ref_finals = reference_loss(cfg, ref_params, ids, targets, ref_state)
        assert abs(loss - want) < 1e-8, f"step {step}"
        grads = numeric_grads(cfg, ref_params, ids, targets, ref_state)
        ref_params, _ = expected_update(ref_params, grads, 1.0, 0.5)
        ref_state = ref_finals


TRAIN_AXES = list(itertools.product(["scratch", "builtin"], CELL_IDS, ["sgd", "adam"]))


@pytest.mark.parametrize("impl,cell_id,optimizer", TRAIN_AXES,
                         ids=[f"{BACKEND}-{i}-{c}-{o}" for i, c, o in TRAIN_AXES])
def test_training_on_a_repeated_sequence_reduces_loss(impl, cell_id, optimizer):
    """A period-5 sequence, sequential batches with the state carried: the loss must fall."""
    cfg = make_cfg(impl, cell_id, "onehot", 1, hidden=16, vocab=5)
    params = init_lm_params(cfg, seed=0, dtype="float32", init="uniform")
    be, model = build(cfg, params, "float32")
    lr = 4.0 if optimizer == "sgd" else 0.05
    trainer = be.make_trainer(model, optimizer, lr=lr, clip=1.0)
    stream = np.arange(2 * 8 * 31 + 1) % 5
    losses, state = [], None
    for step in range(30):
        ids = np.stack([stream[b * 248 + step * 8: b * 248 + step * 8 + 8] for b in range(2)])
        loss, state = trainer.step(ids, (ids + 1) % 5, state)
        losses.append(loss)
    assert np.mean(losses[-5:]) < 0.3 * losses[0], losses


@pytest.mark.parametrize("cell_id", ["lstm", "gru_after"],
                         ids=[f"{BACKEND}-builtin-lstm", f"{BACKEND}-builtin-gru_after"])
def test_builtin_follows_scratch_with_one_bias_per_gate(cell_id):
    """Flax's cells hold one array per canonical parameter (no duplicate recurrent-side biases,
    so nothing is masked): under Adam, builtin and scratch keep the same params."""
    cfg, params, ids, targets, state = case("builtin", cell_id, "embed", 2)
    be, builtin = build(cfg, params)
    assert len(builtin.params) == len(params)
    assert sum(name.endswith("/bias") for name in builtin.params) == sum(
        key.split(".")[-1].startswith("b_") for key in params if key != "b_q")
    scratch = be.build_lm(make_cfg("scratch", cell_id, "embed", 2), params, "float64")
    trainers = [be.make_trainer(m, "adam", lr=0.05, clip=0.5) for m in (builtin, scratch)]
    for _ in range(3):
        for trainer in trainers:
            trainer.step(ids, targets, state)
    got, want = trainers[0].params(), trainers[1].params()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-12, rtol=0, err_msg=key)


@pytest.mark.parametrize("impl", ["scratch", "builtin"], ids=IMPL_IDS)
def test_steps_reuse_one_executable(impl):
    """Every step after the first, and a second trainer of the same cfg with other rates, runs
    the cached `train_step` executable: no retracing per step."""
    from jax_impl.train import train_step
    cfg, params, ids, targets, state = case(impl, "lstm", "onehot", 1)
    be, model = build(cfg, params)
    trainer = be.make_trainer(model, "sgd", lr=0.1, clip=1.0)
    _, carried = trainer.step(ids, targets, None)
    compiled = train_step._cache_size()
    trainer.step(ids, targets, carried)
    be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", lr=0.3, clip=2.0).step(
        ids, targets, state)
    assert train_step._cache_size() == compiled


def test_builtin_reset_before_and_bad_params_are_refused():
    be = backend_or_skip(BACKEND)
    cfg = make_cfg("builtin", "gru_before")
    params = init_lm_params(cfg)
    with pytest.raises(NotSupported, match="reset_before"):
        be.build_lm(cfg, params)
    scratch = make_cfg("scratch", "lstm")
    with pytest.raises(ValueError, match="missing"):
        be.build_lm(scratch, {k: v for k, v in init_lm_params(scratch).items() if k != "b_q"})
    with pytest.raises(ValueError, match="optimizer"):
        be.make_trainer(be.build_lm(scratch, init_lm_params(scratch)), "rmsprop")
    with pytest.raises(ValueError, match="token ids"):  # JAX would clamp them silently
        be.lm_forward(be.build_lm(scratch, init_lm_params(scratch)), np.full((1, 2), V))
