"""MXNet backend: Gluon layout and gate order, hybridization, kernel errors, devices, info().

What every backend shares (round trip, refusals, states, vjp) is in test_convert_backends.py.
"""
import json

import numpy as np
import pytest

from bench.parity.tolerances import allclose
from conftest import B, H, I, T, case_arrays, make_spec
from common.backend import flatten_state
from common.errors import NotSupported, RnnbenchError
from common.params import init_params, param_shapes
from common.registry import get_backend, install_hint, is_available

if not is_available("mxnet"):
    pytest.skip(f"mxnet is not installed: {install_hint('mxnet')}", allow_module_level=True)
be = get_backend("mxnet")

from mxnet_impl import convert  # noqa: E402  (after the skip: needs mxnet)
from mxnet_impl._mx import mx  # noqa: E402
from mxnet_impl.adapter import mxnet_error_text  # noqa: E402
from mxnet_impl.devices import resolve_device  # noqa: E402
from mxnet_impl.arrays import from_numpy  # noqa: E402
from mxnet_impl.layers import builtin_forward, builtin_from_native, make_builtin  # noqa: E402

CELLS = ["rnn", "lstm", "gru"]
STACKS = [(1, False), (2, True)]
STACK_IDS = ["L1-uni", "L2-bi"]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def random_native(spec, seed=0):
    """A native layout with every entry random, recurrent biases included."""
    rng = np.random.default_rng(seed)
    native = convert.to_native(spec, init_params(spec, seed=seed))
    return {k: rng.uniform(-0.5, 0.5, size=v.shape) for k, v in native.items()}


def gluon_forward(spec, native, X, state, hybridize=True):
    """Run Gluon's fused layer holding `native` on NumPy inputs (float64, CPU)."""
    net = builtin_from_native(spec, native, "float64", mx.cpu(), hybridize=hybridize)
    nd64 = lambda a: from_numpy(a, "float64", mx.cpu())
    state_nd = [tuple(map(nd64, s)) if isinstance(s, tuple) else nd64(s) for s in state]
    Y, finals = builtin_forward(spec, net, nd64(X), state_nd)
    return Y.asnumpy(), [a.asnumpy() for a in flatten_state(finals)]


@pytest.mark.parametrize("layers,bi", STACKS, ids=STACK_IDS)
@pytest.mark.parametrize("cell", CELLS)
def test_native_names_match_gluon(cell, layers, bi):
    spec = make_spec(cell, "reset_after", layers, bi)
    net = make_builtin(spec, init_params(spec), "float64", mx.cpu())
    gluon = {name[len(net.prefix):]: p.shape for name, p in net.collect_params().items()}
    native = convert.to_native(spec, init_params(spec))
    assert gluon == {k: v.shape for k, v in native.items()}
    assert sorted(convert.native_names(spec)) == sorted(gluon)


@pytest.mark.parametrize("cell", CELLS)
def test_reading_sums_the_two_biases(cell):
    spec = make_spec(cell, "reset_after", 2, True)
    native = random_native(spec)
    canon = convert.from_native(spec, native)
    split = lambda name: np.split(native[name], GATES[cell])
    x_side, h_side = split("r1_i2h_bias"), split("r1_h2h_bias")
    order = convert.NATIVE_GATES[cell]
    for j, g in enumerate(order):
        if cell == "gru" and g == "h":  # candidate: b_h input side, b_hn recurrent, apart
            np.testing.assert_array_equal(canon["l1_rev.b_h"], x_side[j])
            np.testing.assert_array_equal(canon["l1_rev.b_hn"], h_side[j])
        else:
            np.testing.assert_array_equal(canon[f"l1_rev.b_{g}"], x_side[j] + h_side[j])
    again = convert.to_native(spec, canon)
    np.testing.assert_array_equal(again["r1_i2h_weight"], native["r1_i2h_weight"])
    np.testing.assert_allclose(again["r1_i2h_bias"] + again["r1_h2h_bias"],
                               native["r1_i2h_bias"] + native["r1_h2h_bias"],
                               **allclose("one rounding"))


@pytest.mark.parametrize("cell", CELLS)
def test_native_with_recurrent_biases_computes_what_canonical_says(cell):
    """Gluon on a native layout == the NumPy reference on its canonical reading.

    Random recurrent biases, two bidirectional layers and random states: a wrong gate order,
    bias reading, direction prefix or state order all fail here."""
    import reference
    spec, _, X, state, *_ = case_arrays(cell, "reset_after", 2, True)
    native = random_native(spec, seed=3)
    Y, finals = gluon_forward(spec, native, X, state)
    Y_ref, finals_ref = reference.forward(spec, convert.from_native(spec, native), X, state)
    np.testing.assert_allclose(Y, Y_ref, **allclose("same function"))
    for got, want in zip(finals, flatten_state(finals_ref), strict=True):
        np.testing.assert_allclose(got, want, **allclose("same function"))


@pytest.mark.parametrize("cell,swap", [("lstm", (1, 2)), ("lstm", (2, 3)), ("gru", (0, 1))],
                         ids=["lstm-f<->c", "lstm-c<->o", "gru-r<->z"])
def test_swapped_gates_are_caught(cell, swap):
    """The gate order is not a guess: swapping two native gate blocks changes Gluon's output."""
    spec, params, X, state, *_ = case_arrays(cell, "reset_after", 1, False)
    native = convert.to_native(spec, params)
    Y, _ = gluon_forward(spec, native, X, state)
    swapped = dict(native)
    for name in ("l0_i2h_weight", "l0_h2h_weight", "l0_i2h_bias"):
        blocks = np.split(native[name], GATES[cell])
        blocks[swap[0]], blocks[swap[1]] = blocks[swap[1]], blocks[swap[0]]
        swapped[name] = np.concatenate(blocks)
    Y_swapped, _ = gluon_forward(spec, swapped, X, state)
    assert np.abs(Y - Y_swapped).max() > 1e-3


def test_gate_blocks_in_documented_order():
    spec = make_spec("lstm", "reset_after", 1, False)
    params = {k: np.zeros(s) for k, s in param_shapes(spec).items()}
    for value, gate in enumerate("ifoc", start=1):
        params[f"l0.b_{gate}"] = np.full(H, float(value))
    bias = convert.to_native(spec, params)["l0_i2h_bias"]
    np.testing.assert_array_equal(np.split(bias, 4), [np.full(H, v) for v in (1., 2., 4., 3.)])


@pytest.mark.parametrize("cell", CELLS)
def test_bias_gradient_is_the_input_side_gradient(cell):
    spec = make_spec(cell, "reset_after", 1, False)
    grads = random_native(spec, seed=5)
    canon = convert.grads_from_native(spec, grads)
    x_side = np.split(grads["l0_i2h_bias"], GATES[cell])
    h_side = np.split(grads["l0_h2h_bias"], GATES[cell])
    for j, g in enumerate(convert.NATIVE_GATES[cell]):
        np.testing.assert_array_equal(canon[f"l0.b_{g}"], x_side[j])
    if cell == "gru":
        np.testing.assert_array_equal(canon["l0.b_hn"], h_side[2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hybridized_builtin_matches_imperative(dtype):
    spec, params, X, state, *_ = case_arrays("lstm", "reset_after", 2, True)
    layer = be.build_layer(spec, "builtin", params, dtype)
    assert layer.module._active and "hybridized" in layer.code_path  # Gluon's hybridize flag
    Y, _ = be.forward(layer, X.astype(dtype), [tuple(a.astype(dtype) for a in s) for s in state])
    native = convert.to_native(spec, params)
    Y_imperative, _ = gluon_forward(spec, native, X, state, hybridize=False)
    np.testing.assert_allclose(Y, Y_imperative, **allclose("reference", dtype))


def test_code_path_names_the_kernel():
    spec, params, *_ = case_arrays("rnn", "reset_after", 1, False)
    assert "native CPU kernel" in be.build_layer(spec, "builtin", params, "float64").code_path
    if be.info()["details"]["features"].get("MKLDNN"):
        assert "oneDNN" in be.build_layer(spec, "builtin", params, "float32").code_path
    assert "nd.dot" in be.build_layer(spec, "scratch", params, "float64").code_path
    assert "hand-written backward" in be.build_layer(spec, "fast", params, "float64").code_path


def test_kernel_error_becomes_not_supported_with_mxnet_text(monkeypatch):
    from mxnet_impl import adapter
    error = mx.base.MXNetError('Traceback (most recent call last):\n  File "../src/x.cc", line 1\n'
                               'MXNetError: this dtype is not implemented')
    monkeypatch.setattr(adapter, "_probe", lambda layer: (_ for _ in ()).throw(error))
    spec, params, *_ = case_arrays("lstm", "reset_after", 1, False)
    with pytest.raises(NotSupported, match="MXNetError: this dtype is not implemented"):
        be.build_layer(spec, "builtin", params)


def test_error_text_is_mxnets_own_first_line():
    """A real kernel refusal (float16 on CPU) is quoted by its message, not its traceback line."""
    net = mx.gluon.rnn.LSTM(H, input_size=I, layout="TNC", dtype="float16")
    net.initialize()
    with pytest.raises(mx.base.MXNetError) as info:
        Y, _ = net(mx.nd.ones((T, B, I), dtype="float16"), net.begin_state(B, dtype="float16"))
        Y.asnumpy()
    text = mxnet_error_text(info.value)
    assert "\n" not in text and not text.startswith(("Traceback", "File"))
    assert text in str(info.value)


def test_cpu_resolves():
    assert resolve_device("cpu") == mx.cpu()
    assert resolve_device("CPU").device_type == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda", "gpu:7"])
def test_unseen_gpu_raises_with_install_hint(name):
    if mx.context.num_gpus() > 7 or (name != "gpu:7" and mx.context.num_gpus() > 0):
        pytest.skip("this machine has that GPU")
    with pytest.raises(RnnbenchError, match="sees .* GPU.*mxnet-cu"):
        resolve_device(name)


def test_info_reports_versions_features_and_threads():
    info = be.info()
    json.dumps(info)
    info = info["details"]
    assert info["backend"] == "mxnet" and info["mxnet"] == mx.__version__
    assert {"MKLDNN", "CUDA", "CUDNN", "OPENMP"} <= set(info["features"])
    assert isinstance(info["num_gpus"], int) and "omp_num_threads" in info
    assert all(k.startswith("MXNET_") or k in ("OMP_NUM_THREADS", "NVIDIA_TF32_OVERRIDE")
               for k in info["env"])
