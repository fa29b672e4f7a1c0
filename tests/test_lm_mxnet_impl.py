"""MXNet language model and trainer against the NumPy reference: logits, loss, gradients, steps."""
import functools
import itertools

import numpy as np
import pytest

import reference
from conftest import CELL_IDS, CELL_VARIANTS
from common.backend import flatten_state, random_state
from common.config import LMConfig, LayerSpec
from common.errors import NotSupported, RnnbenchError
from common.params import init_lm_params
from common.registry import get_backend, install_hint, is_available

if not is_available("mxnet"):
    pytest.skip(f"mxnet is not installed: {install_hint('mxnet')}", allow_module_level=True)
be = get_backend("mxnet")

from mxnet_impl._mx import mx  # noqa: E402  (after the skip: needs mxnet)
from mxnet_impl.layers import to_nd  # noqa: E402
from mxnet_impl.train import clip_gradients  # noqa: E402

V, H, E, B, T = 7, 4, 3, 3, 5
VALUE_TOL = {"float64": 1e-10, "float32": 2e-5}
GRAD_TOL = 1e-6  # finite differences of the float64 reference
INPUTS = {"onehot": None, "embed": E}


def make_cfg(impl, cell, variant="reset_after", inputs="onehot", layers=1, vocab=V, hidden=H):
    return LMConfig(cell, impl, vocab, hidden, layers, variant, INPUTS[inputs])


@functools.lru_cache(maxsize=None)
def lm_case(cell, variant, inputs, layers, seed=0):
    """(params, ids, targets, state) in float64, shared by scratch and builtin."""
    cfg = make_cfg("scratch", cell, variant, inputs, layers)
    params = init_lm_params(cfg, seed=seed, dtype="float64", init="uniform")
    rng = np.random.default_rng(seed + 1)
    ids, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    return params, ids, targets, random_state(cfg.layer_spec, B, rng)


def cast_state(state, dtype):
    return [tuple(np.asarray(a, dtype) for a in s) if isinstance(s, tuple) else np.asarray(s, dtype)
            for s in state]


def as_numpy_state(state):
    return [tuple(a.asnumpy() for a in s) if isinstance(s, tuple) else s.asnumpy() for s in state]


# ---- logits, states and loss against the reference ----------------------------------------

def _grid():
    """(impl, cell, variant, inputs, layers, dtype, initial state), built-in reset_before left out
    (it raises NotSupported: test_builtin_reset_before_is_not_supported)."""
    out, ids = [], []
    for impl, (cv, cid), inputs, layers, dtype, init in itertools.product(
            ["scratch", "builtin"], zip(CELL_VARIANTS, CELL_IDS), INPUTS, [1, 2],
            ["float64", "float32"], ["zero", "random"]):
        if impl == "builtin" and cv[1] == "reset_before":
            continue
        out.append((impl, *cv, inputs, layers, dtype, init))
        ids.append(f"{impl}-{cid}-{inputs}-L{layers}-{dtype}-{init}state")
    return pytest.mark.parametrize("impl,cell,variant,inputs,layers,dtype,init", out, ids=ids)


@_grid()
def test_logits_states_and_loss_match_reference(impl, cell, variant, inputs, layers, dtype, init):
    params, ids, targets, state = lm_case(cell, variant, inputs, layers)
    state = None if init == "zero" else state
    cfg = make_cfg(impl, cell, variant, inputs, layers)
    model = be.build_lm(cfg, params, dtype)
    logits, finals = be.lm_forward(model, ids, None if state is None else cast_state(state, dtype))
    want, want_finals = reference.lm_forward(cfg, params, ids, state)
    tol = VALUE_TOL[dtype]
    assert logits.dtype == np.dtype(dtype) and logits.shape == (B, T, V)
    np.testing.assert_allclose(logits, want, atol=tol, rtol=0)
    for got, ref in zip(flatten_state(finals), flatten_state(want_finals), strict=True):
        np.testing.assert_allclose(got, ref, atol=tol, rtol=0)
    loss, grads, _ = be.lm_loss_grads(model, ids, targets, state)
    assert isinstance(loss, float) and set(grads) == set(params)
    assert abs(loss - reference.cross_entropy(want, targets)) < tol


def test_builtin_reset_before_is_not_supported():
    params, *_ = lm_case("gru", "reset_before", "onehot", 1)
    with pytest.raises(NotSupported, match="reset_before"):
        be.build_lm(make_cfg("builtin", "gru", "reset_before"), params, "float64")


class BiLMConfig(LMConfig):
    """An LM config claiming a bidirectional stack, which LMConfig itself cannot express."""

    @property
    def layer_spec(self):
        return LayerSpec(self.cell, self.input_size, self.hidden_size, self.num_layers, True)


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_bidirectional_lm_is_not_supported(impl):
    cfg = BiLMConfig("rnn", impl, V, H)
    with pytest.raises(NotSupported, match="bidirectional"):
        be.build_lm(cfg, {}, "float64")


def test_unseen_gpu_is_a_clear_error():
    if mx.context.num_gpus() > 0:
        pytest.skip("a GPU is present")
    params, *_ = lm_case("rnn", "reset_after", "onehot", 1)
    with pytest.raises(RnnbenchError, match="GPU"):
        be.build_lm(make_cfg("scratch", "rnn"), params, "float32", device="gpu")


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_params_round_trip_and_record_code_path(impl, dtype):
    params, *_ = lm_case("lstm", "reset_after", "embed", 2)
    model = be.build_lm(make_cfg(impl, "lstm", inputs="embed", layers=2), params, dtype)
    back = be.lm_params(model)
    assert set(back) == set(params)
    for key in params:
        assert back[key].dtype == np.dtype(dtype), key
        np.testing.assert_array_equal(back[key], params[key].astype(dtype), err_msg=key)
    assert ("fused RNN op" in model.code_path) == (impl == "builtin")
    assert ("oneDNN" in model.code_path) == (impl == "builtin" and dtype == "float32")


# ---- gradients against finite differences of the reference --------------------------------

GRAD_CASES = [("scratch", "lstm", "reset_after", "onehot", 2),
              ("scratch", "gru", "reset_before", "embed", 1),
              ("builtin", "gru", "reset_after", "embed", 1),
              ("builtin", "lstm", "reset_after", "onehot", 2),
              ("builtin", "rnn", "reset_after", "onehot", 1)]


def reference_loss_grads(cfg, params, ids, targets, state):
    """Central differences of the reference loss with respect to every parameter (float64)."""
    params = {k: v.copy() for k, v in params.items()}
    f = lambda: reference.cross_entropy(reference.lm_forward(cfg, params, ids, state)[0], targets)
    return {k: reference.numeric_grad(f, params[k]) for k in params}


@pytest.mark.parametrize("impl,cell,variant,inputs,layers", GRAD_CASES,
                         ids=[f"{i}-{c}[{v}]-{x}-L{n}" for i, c, v, x, n in GRAD_CASES])
def test_loss_gradients_match_finite_differences(impl, cell, variant, inputs, layers):
    params, ids, targets, state = lm_case(cell, variant, inputs, layers)
    cfg = make_cfg(impl, cell, variant, inputs, layers)
    _, grads, _ = be.lm_loss_grads(be.build_lm(cfg, params, "float64"), ids, targets, state)
    want = reference_loss_grads(cfg, params, ids, targets, state)
    for key in want:
        np.testing.assert_allclose(grads[key], want[key], atol=GRAD_TOL, rtol=GRAD_TOL,
                                   err_msg=f"{impl} {cfg.layer_spec.label} {key}")


# ---- training steps ----------------------------------------------------------------------

def hand_clip(grads, clip):
    """d2l's clipping in NumPy: `(clipped grads, norm before clipping)`."""
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    scale = clip / norm if (clip is not None and norm > clip) else 1.0
    return {k: scale * g for k, g in grads.items()}, norm


def hand_sgd(grads, params, lr, clip):
    """d2l's clipping and `p -= lr * g` in NumPy: the step the trainer must take."""
    clipped, norm = hand_clip(grads, clip)
    return {k: params[k] - lr * clipped[k] for k in params}, norm


CLIPS = {"clip_active": 0.05, "clip_inactive": 1e6, "clip_off": None}


@pytest.mark.parametrize("clip", CLIPS, ids=list(CLIPS))
@pytest.mark.parametrize("impl,cell,variant", [("scratch", "lstm", "reset_after"),
                                               ("scratch", "gru", "reset_before"),
                                               ("builtin", "lstm", "reset_after"),
                                               ("builtin", "gru", "reset_after")],
                         ids=["scratch-lstm", "scratch-gru_before", "builtin-lstm",
                              "builtin-gru_after"])
def test_sgd_step_equals_hand_computation(impl, cell, variant, clip):
    params, ids, targets, state = lm_case(cell, variant, "embed", 2)
    cfg = make_cfg(impl, cell, variant, "embed", 2)
    loss_ref, grads, _ = be.lm_loss_grads(be.build_lm(cfg, params, "float64"), ids, targets, state)
    want, norm = hand_sgd(grads, params, 0.75, CLIPS[clip])
    if CLIPS[clip] is not None:  # the case is what its name says
        assert (norm > CLIPS[clip]) == (clip == "clip_active")
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", 0.75, CLIPS[clip])
    loss, _ = trainer.step(ids, targets, state)
    assert isinstance(loss, float) and loss == loss_ref
    got = trainer.params()
    for key in params:  # a built-in bias moved twice as far would fail here
        np.testing.assert_allclose(got[key], want[key], atol=1e-13, rtol=0, err_msg=key)


def test_clip_gradients_is_d2l_exact():
    """The global norm over all arrays, no epsilon; exactly unchanged below the threshold."""
    g = [np.array([3.0, 0.0]), np.array([[4.0]])]  # norm 5
    nd = lambda a: to_nd(a, mx.cpu(), "float64")
    clipped = [a.asnumpy() for a in clip_gradients([nd(a) for a in g], 2.5)]
    np.testing.assert_array_equal(clipped[0], [1.5, 0.0])
    np.testing.assert_array_equal(clipped[1], [[2.0]])
    kept = [a.asnumpy() for a in clip_gradients([nd(a) for a in g], 5.0)]
    np.testing.assert_array_equal(kept[0], g[0])
    np.testing.assert_array_equal(kept[1], g[1])


def test_sgd_learning_rate_acts_rounded_to_float32():
    """MXNet's kernels take `lr` as a C float (documented in train.Trainer)."""
    params, ids, targets, state = lm_case("rnn", "reset_after", "onehot", 1)
    cfg = make_cfg("scratch", "rnn")
    _, grads, _ = be.lm_loss_grads(be.build_lm(cfg, params, "float64"), ids, targets, state)
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", 0.7, None)
    trainer.step(ids, targets, state)
    got, key = trainer.params(), "l0.W_hh"
    np.testing.assert_allclose(got[key], params[key] - float(np.float32(0.7)) * grads[key],
                               atol=1e-15, rtol=0)
    assert np.abs(got[key] - (params[key] - 0.7 * grads[key])).max() > 1e-12


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_adam_step_is_mxnets_documented_update(impl):
    """First step: `p -= lr * sqrt(1-b2)/(1-b1) * m / (sqrt(v) + eps)`, m, v from the clipped g;
    the kernel's constants are C floats (`f32` below), `lr_t` is formed in Python doubles."""
    params, ids, targets, state = lm_case("gru", "reset_after", "onehot", 1)
    cfg = make_cfg(impl, "gru")
    _, grads, _ = be.lm_loss_grads(be.build_lm(cfg, params, "float64"), ids, targets, state)
    clipped, norm = hand_clip(grads, 0.1)
    assert norm > 0.1
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    f32 = lambda x: float(np.float32(x))
    lr_t = f32(lr * np.sqrt(1 - b2) / (1 - b1))
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "adam", lr, 0.1)
    trainer.step(ids, targets, state)
    got = trainer.params()
    for key, g in clipped.items():
        m, v = (1 - f32(b1)) * g, (1 - f32(b2)) * g * g
        want = params[key] - lr_t * m / (np.sqrt(v) + f32(eps))
        np.testing.assert_allclose(got[key], want, atol=1e-15, rtol=0, err_msg=key)
        assert not np.array_equal(got[key], params[key]), key


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_returned_state_is_detached_and_can_be_fed_back(impl):
    params, ids, targets, _ = lm_case("lstm", "reset_after", "onehot", 2)
    cfg = make_cfg(impl, "lstm", layers=2)
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", 0.5, 1.0)
    _, state = trainer.step(ids, targets, None)
    _, want_finals = reference.lm_forward(cfg, params, ids, None)
    assert isinstance(state[0][0], mx.nd.NDArray) and len(state) == 2
    for got, want in zip(flatten_state(as_numpy_state(state)), flatten_state(want_finals)):
        np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)
    after = trainer.params()
    loss, _ = trainer.step(ids, targets, state)
    want_loss = reference.cross_entropy(
        reference.lm_forward(cfg, after, ids, as_numpy_state(state))[0], targets)
    assert abs(loss - want_loss) < 1e-12


@pytest.mark.parametrize("impl,cell", [("scratch", "rnn"), ("builtin", "rnn"),
                                       ("scratch", "gru"), ("builtin", "gru")],
                         ids=["scratch-rnn", "builtin-rnn", "scratch-gru", "builtin-gru"])
def test_sgd_losses_follow_reference_math_over_steps(impl, cell):
    """Four float64 steps, state carried: losses from the reference with finite-difference
    gradients and NumPy SGD (clipping active at first) equal the trainer's."""
    cfg = make_cfg(impl, cell, vocab=5, hidden=3)
    params = init_lm_params(cfg, seed=4, dtype="float64", init="uniform")
    rng = np.random.default_rng(5)
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", 1.0, 0.5)
    state, ref_state = None, None
    for _ in range(4):
        ids, targets = rng.integers(0, 5, (2, 4)), rng.integers(0, 5, (2, 4))
        loss, state = trainer.step(ids, targets, state)
        logits, finals = reference.lm_forward(cfg, params, ids, ref_state)
        assert abs(loss - reference.cross_entropy(logits, targets)) < 1e-8
        grads = reference_loss_grads(cfg, params, ids, targets, ref_state)
        params, _ = hand_sgd(grads, params, 1.0, 0.5)
        ref_state = finals
    for key, value in trainer.params().items():
        np.testing.assert_allclose(value, params[key], atol=1e-8, rtol=0, err_msg=key)


@pytest.mark.parametrize("optimizer,lr,factor", [("sgd", 1.0, 0.6), ("adam", 0.05, 0.1)])
@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_training_on_a_repeated_sequence_reduces_the_loss(impl, optimizer, lr, factor):
    cfg = make_cfg(impl, "lstm", vocab=5, hidden=8)
    model = be.build_lm(cfg, init_lm_params(cfg, seed=0, dtype="float32", init="uniform"))
    trainer = be.make_trainer(model, optimizer, lr, 1.0)
    seq = np.tile(np.arange(5), 4)
    ids, targets = np.stack([seq[:-1]] * 2), np.stack([seq[1:]] * 2)
    losses = [trainer.step(ids, targets, None)[0] for _ in range(40)]
    assert losses[-1] < factor * losses[0], losses
