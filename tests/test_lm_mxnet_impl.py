"""MXNet's language model and trainer: what only MXNet has (the shared tests: test_lm_backends.py).

Its kernels take the learning rate and Adam's constants as C floats, its built-in layer names
its kernel in `code_path`, and its d2l clipping is its own function.
"""
import numpy as np
import pytest

from bench.parity.tolerances import allclose
from common.errors import RnnbenchError
from common.registry import get_backend, install_hint, is_available
from test_lm_backends import case, clip_grads

if not is_available("mxnet"):
    pytest.skip(f"mxnet is not installed: {install_hint('mxnet')}", allow_module_level=True)
be = get_backend("mxnet")

from mxnet_impl._mx import mx  # noqa: E402  (after the skip: needs mxnet)
from mxnet_impl.arrays import from_numpy  # noqa: E402
from mxnet_impl.trainer import clip_gradients  # noqa: E402


def test_unseen_gpu_is_a_clear_error():
    if mx.context.num_gpus() > 0:
        pytest.skip("a GPU is present")
    cfg, params, *_ = case("scratch", "rnn", "onehot", 1)
    with pytest.raises(RnnbenchError, match="GPU"):
        be.build_lm(cfg, params, "float32", device="gpu")


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_code_path_names_the_kernel(impl, dtype):
    cfg, params, *_ = case(impl, "lstm", "embed", 2)
    model = be.build_lm(cfg, params, dtype)
    assert ("fused RNN op" in model.code_path) == (impl == "builtin")
    assert ("oneDNN" in model.code_path) == (impl == "builtin" and dtype == "float32")


def test_clip_gradients_is_d2l_exact():
    """The global norm over all arrays, no epsilon; exactly unchanged below the threshold."""
    g = [np.array([3.0, 0.0]), np.array([[4.0]])]  # norm 5
    nd = lambda a: from_numpy(a, "float64", mx.cpu())
    clipped = [a.asnumpy() for a in clip_gradients([nd(a) for a in g], 2.5)]
    np.testing.assert_array_equal(clipped[0], [1.5, 0.0])
    np.testing.assert_array_equal(clipped[1], [[2.0]])
    kept = [a.asnumpy() for a in clip_gradients([nd(a) for a in g], 5.0)]
    np.testing.assert_array_equal(kept[0], g[0])
    np.testing.assert_array_equal(kept[1], g[1])


def test_sgd_learning_rate_acts_rounded_to_float32():
    """MXNet's kernels take `lr` as a C float (documented in trainer.py)."""
    cfg, params, ids, targets, state = case("scratch", "rnn", "onehot", 1)
    _, grads, _ = be.lm_loss_grads(be.build_lm(cfg, params, "float64"), ids, targets, state)
    trainer = be.make_trainer(be.build_lm(cfg, params, "float64"), "sgd", 0.7, None)
    trainer.step(ids, targets, state)
    got, key = trainer.params(), "l0.W_hh"
    np.testing.assert_allclose(got[key], params[key] - float(np.float32(0.7)) * grads[key],
                               **allclose("one rounding"))
    assert np.abs(got[key] - (params[key] - 0.7 * grads[key])).max() > 1e-12


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_adam_step_is_mxnets_documented_update(impl):
    """First step: `p -= lr * sqrt(1-b2)/(1-b1) * m / (sqrt(v) + eps)`, m, v from the clipped g;
    the kernel's constants are C floats (`f32` below), `lr_t` is formed in Python doubles."""
    cfg, params, ids, targets, state = case(impl, "gru_after", "onehot", 1)
    _, grads, _ = be.lm_loss_grads(be.build_lm(cfg, params, "float64"), ids, targets, state)
    clipped, norm = clip_grads(grads, 0.1)
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
        np.testing.assert_allclose(got[key], want, **allclose("one rounding"), err_msg=key)
        assert not np.array_equal(got[key], params[key]), key
