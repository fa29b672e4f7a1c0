"""fastbook ch. 12's ladder in each framework: output shapes, training that lowers the loss,
weight tying, AR/TAR, dropout off in evaluation, the one-cycle optimizer against fastai's
formulas, float64 throughout (`--dtype float64`), and the same trajectory in all three
frameworks, in float64 to rounding. Small sizes keep JAX's compiles few."""
import dataclasses

import numpy as np
import pytest

from bench.parity.tolerances import allclose
from common import ladder as L
from common.errors import BackendUnavailable
from common.registry import get_module

BACKENDS = ["torch", "mxnet", "jax"]
MODELS = list(L.MODELS)
DTYPES = ["float32", "float64"]
V, H, B = 30, 8, 4


def ladder_or_skip(backend):
    try:
        return get_module(backend, "ladder")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ids():
    return L.load_ids()


def batch(ids, spec, index=0):
    """Batch `index` of `spec`'s real training batches, first B rows."""
    x, y = list(L.ladder_data(spec, ids.nums).train_batches())[index]
    return x[:B], y[:B]


def model_id(m):
    return f"LMModel{m}"


def no_dropout(spec):
    return dataclasses.replace(spec, dropout=0.0)


# ---------------------------------------------------------------- forward

@pytest.mark.parametrize("model", MODELS, ids=model_id)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_shapes_and_state(backend, model, ids):
    ld, spec = ladder_or_skip(backend), L.get_spec(model)
    x, _ = batch(ids, spec)
    params = L.init_params(spec, V, H)
    fwd = ld.forward_numpy(spec, params, x)
    T = x.shape[1]
    assert fwd.logits.shape == ((B, T, V) if spec.every_step else (B, V))
    if not spec.stateful:
        assert fwd.state is None
        return
    entry = (H and (B, H))
    assert len(fwd.state) == spec.num_layers
    shapes = [tuple(np.shape(a) for a in s) if isinstance(s, tuple) else np.shape(s)
              for s in fwd.state]
    assert shapes == [((entry, entry) if spec.arch == "lstm" else entry)] * spec.num_layers
    carried = ld.forward_numpy(spec, params, x, state=fwd.state)  # the state is really used
    assert not np.allclose(carried.logits, fwd.logits)


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("model", MODELS, ids=model_id)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_few_steps_lower_the_loss(backend, model, ids):
    ld, spec = ladder_or_skip(backend), L.get_spec(model)
    x, y = batch(ids, spec)
    # one cycle peaking at 0.1 over 10 steps: every model (7 with dropout and AR/TAR the
    # slowest, at about 0.77) loses well over 15% of its loss on the batch it trains on
    trainer = ld.make_trainer(spec, L.init_params(spec, V, H), L.OneCycle(1e-1, 10, spec.moms))
    before = trainer.evaluate(x, y)
    losses = [trainer.step(x, y)[0] for _ in range(10)]
    after = trainer.evaluate(x, y)
    assert before[2] == after[2] == y.size
    assert after[0] < 0.85 * before[0], (backend, model, losses)
    assert np.isfinite(losses).all() and losses[-1] < losses[0], (backend, model, losses)


def is_float32(value: float) -> bool:
    """Whether a Python float is exactly a float32 (what `.item()` of a float32 loss gives)."""
    return float(np.float32(value)) == value


@pytest.mark.parametrize("model", MODELS, ids=model_id)
@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_trainer_trains_in_float64(backend, model, ids):
    """`dtype="float64"`: parameters stay float64 through the steps, every loss carries more
    than float32's digits, and the loss falls as in float32."""
    ld, spec = ladder_or_skip(backend), L.get_spec(model)
    x, y = batch(ids, spec)
    params = L.init_params(spec, V, H, dtype="float64")
    trainer = ld.make_trainer(spec, params, L.OneCycle(1e-1, 6, spec.moms), dtype="float64")
    state, losses = None, []
    for _ in range(6):
        loss, state = trainer.step(x, y, state if spec.stateful else None)
        losses.append(loss)
    after = trainer.params()
    assert set(after) == set(params)
    assert {a.dtype for a in after.values()} == {np.dtype(np.float64)}
    assert not any(map(is_float32, losses)), (backend, model, losses)
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0], (backend, model, losses)
    loss_sum, *_ = trainer.evaluate(x, y, state if spec.stateful else None)
    assert np.isfinite(loss_sum) and not is_float32(loss_sum)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_trainer_stays_float32(backend, ids):
    """The default dtype is fastbook's float32 (the check above, turned around)."""
    ld, spec = ladder_or_skip(backend), L.get_spec(3)
    x, y = batch(ids, spec)
    trainer = ld.make_trainer(spec, L.init_params(spec, V, H), L.OneCycle(1e-2, 2))
    losses = [trainer.step(x, y)[0] for _ in range(2)]
    assert all(map(is_float32, losses))
    assert {a.dtype for a in trainer.params().values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_forward_state_and_dropout_are_float64(backend, ids):
    """Model 7 in training: logits, states, raw and dropped-out outputs all float64, with the
    same dropout as in float32 and the float32 forward's values to float32's precision."""
    ld, spec = ladder_or_skip(backend), L.get_spec(7)
    x, _ = batch(ids, spec)
    params = L.init_params(spec, V, H, dtype="float64")
    fwd = ld.forward_numpy(spec, params, x, train=True, seed=1, dtype="float64")
    arrays = [fwd.logits, fwd.raw, fwd.out] + [a for s in fwd.state for a in s]
    assert {np.asarray(a).dtype for a in arrays} == {np.dtype(np.float64)}
    f32 = ld.forward_numpy(spec, L.init_params(spec, V, H), x, train=True, seed=1)
    np.testing.assert_array_equal(fwd.out == 0, f32.out == 0)
    np.testing.assert_allclose(f32.logits, fwd.logits, **allclose("fastbook logits", "float32"))
    carried = ld.forward_numpy(spec, params, x, state=fwd.state, dtype="float64")
    assert carried.logits.dtype == np.float64
    assert not np.allclose(carried.logits, fwd.logits)


TRAJECTORY_MODELS = [1, 3, 4, 5, 6, 7]
# (losses rtol, parameters rtol, parameters atol): float64 runs the same math in all three,
# only the order of sums differs (observed ~1e-15; float32 schedules in optax left 6e-10 in
# the parameters); float32 adds oneDNN's kernels and summation orders


@pytest.fixture(scope="module")
def trajectories(ids):
    """Step losses of 4 steps with carried state and the canonical parameters after them, per
    (backend, model, dtype); model 7 with its dropout, whose masks every framework shares."""
    out = {}
    for model in TRAJECTORY_MODELS:
        spec = L.get_spec(model)
        batches = [batch(ids, spec, i) for i in range(4)]
        for backend in BACKENDS:
            try:
                ld = get_module(backend, "ladder")
            except BackendUnavailable:
                continue
            for dtype in DTYPES:
                trainer = ld.make_trainer(spec, L.init_params(spec, V, H, dtype=dtype),
                                          L.OneCycle(1e-2, 4), dtype=dtype)
                state, losses = None, []
                for x, y in batches:
                    loss, state = trainer.step(x, y, state if spec.stateful else None)
                    losses.append(loss)
                out[backend, model, dtype] = np.array(losses), trainer.params()
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", TRAJECTORY_MODELS, ids=model_id)
@pytest.mark.parametrize("backend", ["mxnet", "jax"])
def test_same_trajectory_as_torch(backend, model, dtype, trajectories):
    """Same losses and parameters: for models 5-7 this also checks that torch's and Gluon's two
    trained biases per gate move their sum as JAX's one bias with a doubled step does. In
    float64 to rounding: the same data, dropout masks, schedules and Adam in all three."""
    if (backend, model, dtype) not in trajectories or ("torch", model, dtype) not in trajectories:
        pytest.skip(f"{backend} or torch is not installed")
    (losses, params), (ref_losses, ref_params) = trajectories[backend, model, dtype], \
        trajectories["torch", model, dtype]
    np.testing.assert_allclose(losses, ref_losses, **allclose("fastbook trajectory losses", dtype),
                               err_msg=f"{backend} LMModel{model} {dtype} vs torch")
    assert set(params) == set(ref_params)
    for key in ref_params:
        assert params[key].dtype == ref_params[key].dtype == np.dtype(dtype)
        np.testing.assert_allclose(params[key], ref_params[key],
                                   **allclose("fastbook trajectory parameters", dtype),
                                   err_msg=f"{backend} LMModel{model} {dtype} {key} vs torch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_builtin_biases_step_twice_as_far_as_fastbooks_two_biases(backend, ids):
    """Adam's first step is `lr * g / (|g| + eps)`; after decay, a built-in's bias moves twice
    that (two native biases, one step each), a weight and the head's bias once."""
    ld, spec = ladder_or_skip(backend), no_dropout(L.get_spec(6))
    x, y = batch(ids, spec)
    params = L.init_params(spec, V, H)
    sched = L.OneCycle(1e-2, 4, spec.moms)
    _, grads = ld.loss_grads(spec, params, x, y)
    trainer = ld.make_trainer(spec, params, sched)
    trainer.step(x, y)
    after, lr = trainer.params(), sched.lrs()[0]
    for key, steps, wd in (("l1.b_f", 2, spec.wd), ("l0.b_i", 2, spec.wd),
                           ("l1.W_hf", 1, spec.wd), ("b_q", 1, 0.0)):
        g = grads[key].astype(np.float64)
        expected = params[key] * (1 - lr * wd) - steps * lr * g / (np.abs(g) + L.EPS)
        np.testing.assert_allclose(after[key], expected, **allclose("fastbook step", "float32"),
                                   err_msg=f"{backend} {key}")


# ---------------------------------------------------------------- weight tying

@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_gradient_comes_from_both_uses(backend, ids):
    """Tied: d/d embedding = the untied model's d/d embedding + (d/d W_hq).T, both nonzero."""
    ld, tied = ladder_or_skip(backend), no_dropout(L.get_spec(7))
    untied = dataclasses.replace(tied, tied=False)
    x, y = batch(ids, tied)
    params = L.init_params(tied, V, H)
    _, g_tied = ld.loss_grads(tied, params, x, y)
    _, g = ld.loss_grads(untied, {**params, "W_hq": params["embedding"].T.copy()}, x, y)
    assert "W_hq" not in g_tied
    assert np.abs(g["embedding"]).max() > 1e-4 and np.abs(g["W_hq"]).max() > 1e-4
    np.testing.assert_allclose(g_tied["embedding"], g["embedding"] + g["W_hq"].T,
                               **allclose("fastbook step", "float32"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_weight_stays_one_array_after_a_step(backend, ids):
    """No output weight of its own before or after training, and the trainer's output layer
    reads the updated embedding (the test above shows both uses train it)."""
    ld, spec = ladder_or_skip(backend), no_dropout(L.get_spec(7))
    x, y = batch(ids, spec)
    params = L.init_params(spec, V, H)
    trainer = ld.make_trainer(spec, params, L.OneCycle(1e-2, 2, spec.moms))
    trainer.step(x, y)
    after = trainer.params()
    assert "W_hq" not in after and not np.allclose(after["embedding"], params["embedding"])
    fwd = ld.forward_numpy(spec, after, x)  # the output layer reads the updated embedding
    expected = np.swapaxes(fwd.out @ after["embedding"].T + after["b_q"], 0, 1)
    np.testing.assert_allclose(fwd.logits, expected, **allclose("fastbook logits", "float32"))
    loss_sum, *_ = trainer.evaluate(x, y)      # the trainer's own forward agrees with it
    logp = expected - np.log(np.exp(expected).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, y[..., None], -1).sum()
    assert loss_sum == pytest.approx(nll, rel=1e-4)


# ---------------------------------------------------------------- regularization

@pytest.mark.parametrize("backend", BACKENDS)
def test_ar_tar_matches_hand_computation(backend):
    ld = ladder_or_skip(backend)
    rng = np.random.default_rng(0)
    raw, out = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
    ar = np.sum(out ** 2) / out.size
    tar = sum(np.sum((raw[t + 1] - raw[t]) ** 2) for t in range(4)) / (4 * 3 * 4)
    assert ld.ar_tar_numpy(raw, out, 2.0, 1.0) == pytest.approx(2 * ar + tar, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_only_in_training(backend, ids):
    ld, spec = ladder_or_skip(backend), L.get_spec(7)
    x, _ = batch(ids, spec)
    params = L.init_params(spec, V, H)
    evals = [ld.forward_numpy(spec, params, x, train=False, seed=s) for s in (1, 2)]
    plain = ld.forward_numpy(no_dropout(spec), params, x, train=True)
    np.testing.assert_array_equal(evals[0].logits, evals[1].logits)
    np.testing.assert_allclose(evals[0].logits, plain.logits,
                               **allclose("fastbook dropout", "float32"))
    trained = ld.forward_numpy(spec, params, x, train=True, seed=1)
    np.testing.assert_allclose(trained.raw, evals[0].raw, **allclose("fastbook dropout", "float32"))
    zeros = np.mean(trained.out == 0)
    assert 0.3 < zeros < 0.5                              # p = 0.4
    kept = trained.out != 0
    np.testing.assert_allclose(trained.out[kept], trained.raw[kept] / 0.6,
                               **allclose("fastbook dropout scale", "float32"))


# ---------------------------------------------------------------- optimizer and schedule

def fastai_adam(grads, sched, wd, w=1.0, beta2=L.BETA2, eps=L.EPS):
    """fastai's Adam (optimizer.py: weight_decay, average_grad with dampening, average_sqr_grad,
    step_stat, adam_step) on one weight, written out in NumPy -> weight after each step."""
    m = v = 0.0
    out = []
    for t, (g, lr, mom) in enumerate(zip(grads, sched.lrs(), sched.momentums()), start=1):
        w *= 1 - lr * wd
        m, v = m * mom + (1 - mom) * g, v * beta2 + (1 - beta2) * g * g
        w -= lr / (1 - mom ** t) * m / (np.sqrt(v / (1 - beta2 ** t)) + eps)
        out.append(w)
    return np.array(out)


TOL = {"torch": 1e-6, "mxnet": 1e-6, "jax": 1e-5}   # jax's hyperparameters are float32
TOL64 = 1e-12   # float64: jax's hyperparameters too (its int32 step count cast to float64)


def tol(backend, dtype):
    return TOL[backend] if dtype == "float32" else TOL64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("moms", [L.LEARNER_MOMS, L.TEXT_LEARNER_MOMS], ids=["learner", "text"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_cycle_matches_numpy_reference_step_by_step(backend, moms, dtype):
    """N = 37: pct_start * N = 9.25 is no whole step, the case torch's and optax's own step
    conventions would round differently."""
    ld, sched = ladder_or_skip(backend), L.OneCycle(1e-2, 37, moms)
    lrs, betas, _ = ld.schedule_trace(sched, dtype=dtype)
    np.testing.assert_allclose(lrs, sched.lrs(), rtol=tol(backend, dtype),
                               err_msg=f"{backend} {dtype} lr")
    np.testing.assert_allclose(betas, sched.momentums(), rtol=tol(backend, dtype),
                               err_msg=f"{backend} {dtype} beta1")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_is_fastais_adam_with_decoupled_weight_decay(backend, dtype):
    ld, sched = ladder_or_skip(backend), L.OneCycle(5e-2, 20)
    grads = np.random.default_rng(0).normal(size=20)
    *_, weights = ld.schedule_trace(sched, grads, wd=0.1, dtype=dtype)
    np.testing.assert_allclose(weights, fastai_adam(grads, sched, 0.1),
                               rtol=10 * tol(backend, dtype))
