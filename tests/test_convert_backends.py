"""Every backend's layer adapter: conversion round trip, NotSupported, refusals and states.

One test per property, parametrized over the backends; a framework that is not installed skips
with its install hint (`conftest.backend_or_skip`). Each framework's native layout, gate order,
devices and info() are tested in test_convert_{torch,mxnet,jax}_impl.py.
"""
import importlib

import numpy as np
import pytest

from bench.parity.tolerances import allclose
from conftest import B, CELL_IDS, CELL_VARIANTS, H, I, T, backend_or_skip, case_arrays, make_spec
from common.backend import flatten_state, zeros_state
from common.errors import NotSupported, RnnbenchError
from common.params import init_params

BACKENDS = ["torch", "mxnet", "jax"]
SHAPES = [(1, False), (1, True), (2, False), (2, True)]
SHAPE_IDS = ["L1-uni", "L1-bi", "L2-uni", "L2-bi"]
IMPLS = ["scratch", "builtin"]
# Every impl x cell a backend supports (builtin + reset_before is NotSupported, tested below).
SUPPORTED = [(i, c, v, f"{i}-{cid}") for i in IMPLS for (c, v), cid in zip(CELL_VARIANTS, CELL_IDS)
             if not (i == "builtin" and v == "reset_before")]
# How each built-in GRU is named when it refuses reset_before.
BUILTIN_GRU = {"torch": r"torch\.nn\.GRU", "mxnet": r"gluon\.rnn\.GRU",
               "jax": r"flax\.linen\.GRUCell"}
# Markers for the per-framework files (test_convert_{torch,jax}_impl.py).
builtin_cells = pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
shapes = pytest.mark.parametrize("layers_,bi", SHAPES, ids=SHAPE_IDS)
impls = pytest.mark.parametrize("impl", IMPLS)


def grid(names, rows, ids, marks=None):
    """`parametrize("backend,<names>")` over the backends x `rows`, the backend first in each id;
    `marks`: backend -> a mark for its cases (a known gap as a strict xfail)."""
    marks = marks or {}
    return pytest.mark.parametrize(f"backend,{names}", [
        pytest.param(b, *r, id=f"{b}-{i}", marks=marks.get(b, ()))
        for b in BACKENDS for r, i in zip(rows, ids, strict=True)])


def convert_module(backend):
    """`<backend>_impl.convert`, or a skip naming the missing extra."""
    backend_or_skip(backend)
    return importlib.import_module(f"{backend}_impl.convert")


@grid("cell,variant,layers_,bi", [(c, v, n, bi) for c, v in CELL_VARIANTS for n, bi in SHAPES],
      [f"{cid}-{sid}" for cid in CELL_IDS for sid in SHAPE_IDS])
def test_canonical_native_canonical_is_exact(backend, cell, variant, layers_, bi):
    convert = convert_module(backend)
    spec = make_spec(cell, variant, layers_, bi)
    params = init_params(spec, seed=1)
    back = convert.from_native(spec, convert.to_native(spec, params))
    assert set(back) == set(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)


@grid("dtype", [("float64",), ("float32",)], ["float64", "float32"])
def test_builtin_reset_before_is_not_supported(backend, dtype):
    be = backend_or_skip(backend)
    spec = make_spec("gru", "reset_before", 1, False)
    with pytest.raises(NotSupported, match=rf"{BUILTIN_GRU[backend]}.*reset_after"):
        be.build_layer(spec, "builtin", init_params(spec, dtype=dtype), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scratch_reset_before_is_supported(backend):
    be = backend_or_skip(backend)
    spec = make_spec("gru", "reset_before", 1, False)
    assert be.build_layer(spec, "scratch", init_params(spec), "float64").impl == "scratch"


@grid("impl,dtype", [("scratch", "float16"), ("cudnn", "float32"), ("compiled", "float32")],
      ["dtype", "impl-cudnn", "impl-compiled"])
def test_unknown_choices_are_refused(backend, impl, dtype):
    be = backend_or_skip(backend)
    spec = make_spec("rnn", "reset_after", 1, False)
    with pytest.raises(ValueError, match="unknown"):
        be.build_layer(spec, impl, init_params(spec), dtype)


@grid("name", [("tpu",), ("mps",), ("",)], ["tpu", "mps", "empty"])
def test_unknown_device_name_is_refused(backend, name):
    be = backend_or_skip(backend)
    spec = make_spec("rnn", "reset_after", 1, False)
    error = RnnbenchError if backend == "mxnet" else ValueError  # MXNet's device errors are ours
    with pytest.raises(error, match="unknown device"):
        importlib.import_module(f"{backend}_impl.devices").resolve_device(name)
    with pytest.raises(error, match="unknown device"):
        be.build_layer(spec, "scratch", init_params(spec), "float64", device=name)


@grid("impl", [(i,) for i in IMPLS], IMPLS)
def test_wrong_params_are_refused(backend, impl):
    be = backend_or_skip(backend)
    spec = make_spec("rnn", "reset_after", 1, False)
    params = init_params(spec)
    del params["l0.b_h"]
    with pytest.raises(ValueError, match="missing.*l0.b_h"):
        be.build_layer(spec, impl, params, "float64")


@grid("impl,cell,variant", [s[:3] for s in SUPPORTED], [s[3] for s in SUPPORTED])
def test_none_state_means_zeros(backend, impl, cell, variant):
    # L2-bi float64: the shapes test_layers already compiled, so this costs JAX no new jit.
    be = backend_or_skip(backend)
    spec, params, X, _, G, _ = case_arrays(cell, variant, 2, True)
    layer = be.build_layer(spec, impl, params, "float64")
    zeros = zeros_state(spec, B)
    Y_none, finals_none = be.forward(layer, X, None)
    Y_zero, finals_zero = be.forward(layer, X, zeros)
    np.testing.assert_array_equal(Y_none, Y_zero)
    assert len(finals_none) == spec.num_layers * spec.num_directions
    assert all(isinstance(s, tuple) == (cell == "lstm") for s in finals_none)
    for got, want in zip(flatten_state(finals_none), flatten_state(finals_zero), strict=True):
        assert got.shape == (B, H)
        np.testing.assert_array_equal(got, want)
    res_none, res_zero = be.vjp(layer, X, None, G), be.vjp(layer, X, zeros, G)
    assert res_none.dstate is None
    assert len(flatten_state(res_zero.dstate)) == len(flatten_state(zeros))
    assert all(d.shape == (B, H) and np.abs(d).max() > 0 for d in flatten_state(res_zero.dstate))
    for key in params:
        np.testing.assert_array_equal(res_none.grads[key], res_zero.grads[key], err_msg=key)


@grid("impl", [(i,) for i in IMPLS], IMPLS)
def test_vjp_without_state_has_no_dstate(backend, impl):
    be = backend_or_skip(backend)
    spec, params, X, _, G, _ = case_arrays("gru", "reset_after", 1, False)
    res = be.vjp(be.build_layer(spec, impl, params, "float32"), X.astype("float32"), None,
                 G.astype("float32"))
    assert res.dstate is None
    assert res.dX.shape == (T, B, I) and res.dX.dtype == np.float32
    assert np.abs(res.dX).max() > 0


@grid("cell", [("rnn",), ("lstm",), ("gru",)], ["rnn", "lstm", "gru"])
def test_builtin_vjp_equals_scratch_vjp(backend, cell):
    be = backend_or_skip(backend)
    spec, params, X, state, G, G_state = case_arrays(cell, "reset_after", 2, True)
    results = [be.vjp(be.build_layer(spec, impl, params, "float64"), X, state, G, G_state)
               for impl in IMPLS]
    for key in params:
        np.testing.assert_allclose(results[1].grads[key], results[0].grads[key],
                                   **allclose("same function, default rtol"),
                                   err_msg=key)
    np.testing.assert_allclose(results[1].dX, results[0].dX,
                               **allclose("same function, default rtol"))
    dstates = (flatten_state(r.dstate) for r in results)
    for a, b in zip(*dstates, strict=True):
        np.testing.assert_allclose(a, b, **allclose("same function, default rtol"))


@grid("impl", [(i,) for i in IMPLS], IMPLS)
def test_repeated_vjp_does_not_accumulate(backend, impl):
    """A second call gives the same answer: no gradient is left behind to add to the next
    (MXNet's buffers are overwritten, grad_req='write')."""
    be = backend_or_skip(backend)
    spec, params, X, state, G, G_state = case_arrays("lstm", "reset_after", 1, True)
    layer = be.build_layer(spec, impl, params, "float64")
    first, second = (be.vjp(layer, X, state, G, G_state) for _ in range(2))
    for key in params:
        np.testing.assert_array_equal(second.grads[key], first.grads[key], err_msg=key)
    for a, b in zip(flatten_state(second.dstate), flatten_state(first.dstate), strict=True):
        np.testing.assert_array_equal(a, b)


@grid("impl", [(i,) for i in IMPLS], IMPLS)
def test_wrong_number_of_states_is_refused(backend, impl):
    be = backend_or_skip(backend)
    spec, params, X, state, _, _ = case_arrays("gru", "reset_after", 2, True)
    layer = be.build_layer(spec, impl, params, "float64")
    with pytest.raises(ValueError, match="4 states"):
        be.forward(layer, X, state[:3])


@grid("impl", [(i,) for i in IMPLS], IMPLS)
def test_state_layout_is_kept(backend, impl):
    be = backend_or_skip(backend)
    spec, params, X, state, _, _ = case_arrays("lstm", "reset_after", 2, True)
    Y, finals = be.forward(be.build_layer(spec, impl, params, "float64"), X, state)
    assert Y.shape == (T, B, 2 * H) and Y.flags.writeable
    assert len(finals) == 4 and all(isinstance(s, tuple) and len(s) == 2 for s in finals)
    assert all(a.shape == (B, H) and a.flags.writeable for a in flatten_state(finals))
