"""Every backend's language model and trainer against the NumPy reference (`reference.lm_forward`).

One test per property, parametrized over the backends; a framework that is not installed skips
with its install hint (`conftest.backend_or_skip`). What only one framework has lives in
test_lm_{torch,mxnet,jax}_impl.py, which reuse the helpers here.

Every id names the combination: backend, impl, cell (GRU variant), input (one-hot or embedding),
layers, dtype, and whether the initial state is zero or random.
"""
import functools
import itertools

import numpy as np
import pytest

import reference
from bench.parity.tolerances import allclose
from conftest import CELL_IDS, CELL_VARIANTS, backend_or_skip
from common.backend import flatten_state, random_state
from common.config import LayerSpec, LMConfig
from common.errors import NotSupported
from common.params import init_lm_params

BACKENDS = ["torch", "mxnet", "jax"]
V, E, H, B, T = 7, 5, 4, 3, 4
CELLS = dict(zip(CELL_IDS, CELL_VARIANTS))
INPUTS = {"onehot": None, "embed": E}
IMPLS = ["scratch", "builtin"]


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


def build(backend, cfg, params, dtype="float64"):
    """(adapter, model), or (builtin reset_before) NotSupported checked and the test skipped."""
    be = backend_or_skip(backend)
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


def clip_grads(grads, clip):
    """d2l's clipping by hand (`clip=None`: off): (clipped grads, norm before clipping)."""
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    scale = clip / norm if clip is not None and norm > clip else 1.0
    return {k: g * scale for k, g in grads.items()}, norm


def expected_update(params, grads, lr, clip, adam=False, held=()):
    """d2l's clipping then one SGD (or first Adam) step, by hand; also the norm clipped.
    `held`: keys whose gradient the trainer zeroes (they keep their values)."""
    grads = {k: np.zeros_like(g) if k in held else g for k, g in grads.items()}
    clipped, norm = clip_grads(grads, clip)
    out = {}
    for key, p in params.items():
        g = clipped[key]
        step = g / (np.abs(g) + 1e-8) if adam else g  # Adam's first step: m/sqrt(v) = g/|g|
        out[key] = p - lr * step
    return out, norm


def grid(names, axes, backends=BACKENDS):
    """`parametrize("backend,<names>")` over backends x `axes`, ids joined with "-"."""
    rows = [(b, *a) for b in backends for a in axes]
    return pytest.mark.parametrize(f"backend,{names}", rows,
                                   ids=["-".join(map(str, row)) for row in rows])


# ---- logits, states and loss against the reference ----------------------------------------

FORWARD_AXES = list(itertools.product(IMPLS, CELL_IDS, list(INPUTS), ["L1", "L2"],
                                      ["float64", "float32"], ["zero", "state"]))
# The fast stack on every cell, two layers fed a state, in both dtypes (its layer grid is in
# test_layers.py; here it sits inside the model).
FORWARD_AXES += list(itertools.product(["fast"], CELL_IDS, ["onehot"], ["L2"],
                                       ["float64", "float32"], ["state"]))


@grid("impl,cell_id,inputs,layers,dtype,init", FORWARD_AXES)
def test_logits_and_loss_match_reference(backend, impl, cell_id, inputs, layers, dtype, init):
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, int(layers[1:]))
    state = state if init == "state" else None
    be, model = build(backend, cfg, params, dtype)
    logits, finals = be.lm_forward(model, ids, None if state is None else cast_state(state, dtype))
    want, want_finals = reference.lm_forward(cfg, params, ids, state)
    assert logits.shape == (B, T, V) and logits.dtype == np.dtype(dtype)
    np.testing.assert_allclose(logits, want, **allclose("reference", dtype))
    for got, ref in zip(flatten_state(finals), flatten_state(want_finals), strict=True):
        np.testing.assert_allclose(got, ref, **allclose("reference", dtype))
    loss, grads, _ = be.lm_loss_grads(model, ids, targets,
                                      None if state is None else cast_state(state, dtype))
    assert isinstance(loss, float) and set(grads) == set(params)
    assert abs(loss - reference.cross_entropy(want, targets)) < allclose("reference", dtype)["atol"]


# ---- gradients against finite differences of the reference --------------------------------

GRAD_CASES = [("scratch", "lstm", "embed", "L2", "state"),
              ("scratch", "lstm", "onehot", "L2", "state"),
              ("builtin", "lstm", "embed", "L2", "zero"),
              ("builtin", "lstm", "onehot", "L2", "state"),
              ("builtin", "gru_after", "onehot", "L1", "state"),
              ("builtin", "gru_after", "embed", "L1", "state"),
              ("scratch", "gru_before", "onehot", "L1", "state"),
              ("scratch", "gru_before", "embed", "L1", "state"),
              ("builtin", "rnn", "onehot", "L2", "state"),
              ("builtin", "rnn", "onehot", "L1", "state"),
              ("fast", "rnn", "embed", "L2", "state"),
              ("fast", "lstm", "onehot", "L2", "state"),
              ("fast", "gru_after", "onehot", "L1", "state"),
              ("fast", "gru_before", "embed", "L1", "state")]


@functools.lru_cache(maxsize=None)
def reference_grads(cell_id, inputs, layers, init):
    """Finite-difference gradients of the reference loss: the same for every backend and impl."""
    cfg, params, ids, targets, state = case("scratch", cell_id, inputs, layers)
    return numeric_grads(cfg, params, ids, targets, state if init == "state" else None)


@grid("impl,cell_id,inputs,layers,dtype,init", [(i, c, x, n, "float64", s)
                                                 for i, c, x, n, s in GRAD_CASES])
def test_loss_grads_match_finite_differences(backend, impl, cell_id, inputs, layers, dtype, init):
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, int(layers[1:]))
    be, model = build(backend, cfg, params, dtype)
    _, grads, _ = be.lm_loss_grads(model, ids, targets, state if init == "state" else None)
    want = reference_grads(cell_id, inputs, int(layers[1:]), init)
    assert set(grads) == set(want)
    for key in want:
        np.testing.assert_allclose(grads[key], want[key], **allclose("finite differences"),
                                   err_msg=f"{backend} {impl} {cfg.layer_spec.label} {key}")


# ---- training steps ----------------------------------------------------------------------

CLIPS = {"clip_active": 0.05, "clip_inactive": 1e6, "clip_off": None}
STEP_AXES = list(itertools.product(IMPLS, CELL_IDS, ["embed"], ["L2"], ["float64"], CLIPS))
STEP_AXES += list(itertools.product(["fast"], CELL_IDS, ["embed"], ["L2"], ["float64"],
                                    ["clip_active"]))


@grid("impl,cell_id,inputs,layers,dtype,clipping", STEP_AXES)
def test_sgd_step_equals_hand_computation(backend, impl, cell_id, inputs, layers, dtype, clipping):
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, int(layers[1:]))
    be, probe = build(backend, cfg, params, dtype)
    loss_want, grads, _ = be.lm_loss_grads(probe, ids, targets, state)
    clip = CLIPS[clipping]
    # d2l's reset_before GRU has one candidate bias: the scratch model's b_hn, added beside b_h,
    # is held so that their sum moves as d2l's b_h does, not twice as far
    d2l_gru = impl in ("scratch", "fast") and cell_id == "gru_before"
    held = [k for k in params if k.endswith("b_hn")] if d2l_gru else []
    want, norm = expected_update(params, grads, 0.5, clip, held=held)
    if clip is not None:  # the case is what its name says
        assert (norm > clip) == (clipping == "clip_active")
    trainer = be.make_trainer(be.build_lm(cfg, params, dtype), "sgd", lr=0.5, clip=clip)
    loss, _ = trainer.step(ids, targets, state)
    assert isinstance(loss, float) and loss == loss_want
    got = trainer.params()
    for key in params:  # a built-in bias moved twice as far would fail here
        np.testing.assert_allclose(got[key], want[key], **allclose("same operations"), err_msg=key)


@grid("optimizer", [("sgd",), ("adam",)])
def test_reset_before_scratch_gru_trains_as_d2ls_one_bias_gru(backend, optimizer):
    """d2l's GRUScratch has one candidate bias b_h. The canonical reset_before GRU adds b_hn
    beside it (the same gradient), so training both would move their sum twice as far: the
    trainer holds b_hn at its initial value and b_h alone moves, by -lr * g (SGD, no clipping)."""
    cfg, params, ids, targets, state = case("scratch", "gru_before", "onehot", 2)
    be, probe = build(backend, cfg, params)
    _, grads, _ = be.lm_loss_grads(probe, ids, targets, state)
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), optimizer, lr=0.5, clip=None)
    for _ in range(3):
        trainer.step(ids, targets, state)
    got = trainer.params()
    for layer in ("l0.", "l1."):
        np.testing.assert_array_equal(got[layer + "b_hn"], params[layer + "b_hn"])
        assert np.abs(got[layer + "b_h"] - params[layer + "b_h"]).max() > 1e-4
    if optimizer == "sgd":
        one = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", lr=0.5, clip=None)
        one.step(ids, targets, state)
        np.testing.assert_allclose(one.params()["l0.b_h"], params["l0.b_h"] - 0.5 * grads["l0.b_h"],
                                   **allclose("same operations"))


# MXNet's Adam forms its step differently (documented in mxnet_impl.trainer):
# test_lm_mxnet_impl.test_adam_step_is_mxnets_documented_update checks that one.
@grid("impl,cell_id,inputs,layers,dtype", [(i, "lstm", "embed", "L1", "float64") for i in IMPLS],
      backends=["torch", "jax"])
def test_first_adam_step_equals_hand_computation(backend, impl, cell_id, inputs, layers, dtype):
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, int(layers[1:]))
    be, probe = build(backend, cfg, params, dtype)
    _, grads, _ = be.lm_loss_grads(probe, ids, targets, state)
    want, _ = expected_update(params, grads, 0.01, None, adam=True)
    trainer = be.make_trainer(be.build_lm(cfg, params, dtype), "adam", lr=0.01, clip=None)
    trainer.step(ids, targets, state)
    got = trainer.params()
    for key in params:
        assert not np.array_equal(got[key], params[key]) or not grads[key].any(), key
        np.testing.assert_allclose(got[key], want[key], **allclose("same function"), err_msg=key)


def _torch_state(a):
    assert not a.requires_grad and a.grad_fn is None
    return a.numpy()


def _jax_state(a):
    import jax
    assert isinstance(a, jax.Array) and a.dtype == np.float64  # stays on the device
    return np.asarray(a)


def _mxnet_state(a):
    from mxnet_impl._mx import mx
    assert isinstance(a, mx.nd.NDArray)
    return a.asnumpy()


# The trainer's state is the framework's own array, detached from the graph: checked, as NumPy.
NATIVE_STATE = {"torch": _torch_state, "jax": _jax_state, "mxnet": _mxnet_state}


@grid("impl,cell_id,inputs,layers,dtype", [
    ("scratch", "lstm", "onehot", "L2", "float64"), ("builtin", "lstm", "onehot", "L2", "float64"),
    ("scratch", "gru_before", "onehot", "L2", "float64"),
    ("builtin", "gru_after", "onehot", "L2", "float64")])
def test_state_from_step_is_detached_and_feeds_back(backend, impl, cell_id, inputs, layers, dtype):
    """The first step's state is the reference's final state, in the framework's own detached
    arrays; fed back, the second step's loss is the reference loss from it, at the new params."""
    cfg, params, ids, targets, state = case(impl, cell_id, inputs, int(layers[1:]))
    be, model = build(backend, cfg, params, dtype)
    trainer = be.make_trainer(model, "sgd", lr=0.5, clip=1.0)
    _, carried = trainer.step(ids, targets, None)
    _, ref_finals = reference_loss(cfg, params, ids, targets, None)
    assert len(carried) == cfg.num_layers
    for got, want in zip(flatten_state(carried), flatten_state(ref_finals), strict=True):
        np.testing.assert_allclose(NATIVE_STATE[backend](got), want, **allclose("same function"))
    after = trainer.params()
    loss, _ = trainer.step(targets, ids, carried)
    want, _ = reference_loss(cfg, after, targets, ids, ref_finals)
    assert abs(loss - want) < 1e-12


@functools.lru_cache(maxsize=None)
def reference_sgd_run(cell_id, steps=4):
    """Clipped SGD steps done by the reference (finite-difference gradients), state carried:
    (initial params, batches, per-step losses, final params); the same for every backend."""
    cfg = make_cfg("scratch", cell_id, vocab=5, hidden=3)
    params = init_lm_params(cfg, seed=4, dtype="float64", init="uniform")
    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, 5, (2, 4)), rng.integers(0, 5, (2, 4))) for _ in range(steps)]
    ref_params, ref_state, losses = dict(params), None, []
    for ids, targets in batches:
        loss, finals = reference_loss(cfg, ref_params, ids, targets, ref_state)
        grads = numeric_grads(cfg, ref_params, ids, targets, ref_state)
        ref_params, _ = expected_update(ref_params, grads, 1.0, 0.5)
        losses.append(loss)
        ref_state = finals
    return params, batches, losses, ref_params


@grid("impl,cell_id,dtype", list(itertools.product(IMPLS, ["rnn", "gru_after"], ["float64"])))
def test_sgd_losses_follow_reference_math(backend, impl, cell_id, dtype):
    """Four clipped SGD steps, state carried: per-step losses and the final params equal the
    NumPy reference's, whose gradients are central differences (the built-in trains the canonical
    model, one bias a gate; clipping is active at first)."""
    params, batches, losses, final = reference_sgd_run(cell_id)
    be, model = build(backend, make_cfg(impl, cell_id, vocab=5, hidden=3), params, dtype)
    trainer = be.make_trainer(model, "sgd", lr=1.0, clip=0.5)
    state = None
    for step, ((ids, targets), want) in enumerate(zip(batches, losses)):
        loss, state = trainer.step(ids, targets, state)
        assert abs(loss - want) < allclose("reference run")["atol"], f"step {step}"
    for key, value in trainer.params().items():
        np.testing.assert_allclose(value, final[key], **allclose("reference run"), err_msg=key)


TRAIN_AXES = list(itertools.product(IMPLS, CELL_IDS, ["sgd", "adam"]))


@grid("impl,cell_id,optimizer", TRAIN_AXES)
def test_training_on_a_repeated_sequence_reduces_loss(backend, impl, cell_id, optimizer):
    """A period-5 sequence, sequential batches with the state carried: the loss must fall."""
    cfg = make_cfg(impl, cell_id, "onehot", 1, hidden=16, vocab=5)
    params = init_lm_params(cfg, seed=0, dtype="float32", init="uniform")
    be, model = build(backend, cfg, params, "float32")
    lr = 4.0 if optimizer == "sgd" else 0.05
    trainer = be.make_trainer(model, optimizer, lr=lr, clip=1.0)
    stream = np.arange(2 * 8 * 31 + 1) % 5
    losses, state = [], None
    for step in range(30):
        ids = np.stack([stream[b * 248 + step * 8: b * 248 + step * 8 + 8] for b in range(2)])
        loss, state = trainer.step(ids, (ids + 1) % 5, state)
        losses.append(loss)
    assert np.mean(losses[-5:]) < 0.3 * losses[0], losses


def adam_trained_builtin_and_scratch(backend, cell_id):
    """(cfg, builtin model, [builtin trainer, scratch trainer]) after three identical Adam steps."""
    cfg, params, ids, targets, state = case("builtin", cell_id, "embed", 2)
    be, builtin = build(backend, cfg, params)
    scratch = be.build_lm(make_cfg("scratch", cell_id, "embed", 2), params, "float64")
    trainers = [be.make_trainer(m, "adam", lr=0.05, clip=0.5) for m in (builtin, scratch)]
    for _ in range(3):
        for trainer in trainers:
            trainer.step(ids, targets, state)
    return cfg, builtin, trainers


@grid("impl,cell_id", [("builtin", "lstm"), ("builtin", "gru_after")])
def test_builtin_follows_scratch_under_adam(backend, impl, cell_id):
    """Adam moves only the canonical model: builtin and scratch keep the same params (how each
    framework stores the built-in's biases: test_lm_{torch,jax}_impl)."""
    _, _, trainers = adam_trained_builtin_and_scratch(backend, cell_id)
    got, want = trainers[0].params(), trainers[1].params()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], **allclose("same function"), err_msg=key)


# ---- parameters and refusals -------------------------------------------------------------

@grid("impl,cell_id,inputs,layers,dtype",
      list(itertools.product(IMPLS, ["lstm"], ["embed"], ["L2"], ["float64", "float32"])))
def test_params_round_trip(backend, impl, cell_id, inputs, layers, dtype):
    cfg, params, *_ = case(impl, cell_id, inputs, int(layers[1:]))
    be, model = build(backend, cfg, params, dtype)
    back = be.lm_params(model)
    assert set(back) == set(params)
    for key in params:
        assert back[key].dtype == np.dtype(dtype), key
        np.testing.assert_array_equal(back[key], params[key].astype(dtype), err_msg=key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_builtin_reset_before_and_bad_params_are_refused(backend):
    be = backend_or_skip(backend)
    cfg = make_cfg("builtin", "gru_before")
    params = init_lm_params(cfg)
    with pytest.raises(NotSupported, match="reset_before"):
        be.build_lm(cfg, params)
    scratch = make_cfg("scratch", "lstm")
    with pytest.raises(ValueError, match="missing"):
        be.build_lm(scratch, {k: v for k, v in init_lm_params(scratch).items() if k != "b_q"})
    with pytest.raises(ValueError, match="optimizer"):
        be.make_trainer(be.build_lm(scratch, init_lm_params(scratch)), "rmsprop")


class BiLMConfig(LMConfig):
    """An LM config claiming a bidirectional stack, which LMConfig itself cannot express."""

    @property
    def layer_spec(self):
        return LayerSpec(self.cell, self.input_size, self.hidden_size, self.num_layers, True)


@grid("impl", [(i,) for i in IMPLS])
def test_bidirectional_lm_is_not_supported(backend, impl):
    be = backend_or_skip(backend)
    with pytest.raises(NotSupported, match="bidirectional"):
        be.build_lm(BiLMConfig("rnn", impl, V, H), {}, "float64")
