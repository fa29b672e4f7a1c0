"""Every backend x impl x cell x variant x layers x direction x dtype against the NumPy reference."""
import functools
import itertools

import numpy as np
import pytest

import reference
from bench.parity.tolerances import allclose
from conftest import CELL_IDS, CELL_VARIANTS, backend_or_skip, case_arrays
from common.backend import flatten_state
from common.errors import NotSupported
from common.params import cast_params

BACKENDS = ["torch", "mxnet", "jax"]
IMPLS = ["scratch", "fast", "builtin"]

AXES = list(itertools.product(BACKENDS, IMPLS, zip(CELL_VARIANTS, CELL_IDS), [1, 2],
                              [False, True], ["float64", "float32"]))


def _params(axes):
    ids = [f"{b}-{i}-{c[1]}-L{n}-{'bi' if d else 'uni'}-{t}" for b, i, c, n, d, t in axes]
    return pytest.mark.parametrize("backend,impl,cell,variant,layers,bi,dtype",
                                   [(b, i, *c[0], n, d, t) for b, i, c, n, d, t in axes], ids=ids)


def _build(backend, impl, spec, params, dtype):
    be = backend_or_skip(backend)
    if impl == "builtin" and spec.cell == "gru" and spec.gru_variant == "reset_before":
        with pytest.raises(NotSupported):
            be.build_layer(spec, impl, cast_params(params, dtype), dtype)
        pytest.skip("reset_before is not a built-in GRU; NotSupported raised as documented")
    try:
        return be, be.build_layer(spec, impl, cast_params(params, dtype), dtype)
    except NotSupported as exc:
        pytest.skip(f"not supported: {exc}")


def _cast_state(state, dtype):
    return [tuple(np.asarray(a, dtype) for a in s) if isinstance(s, tuple) else np.asarray(s, dtype)
            for s in state]


@functools.lru_cache(maxsize=None)
def numeric_grads(cell, variant, layers, bi):
    """Finite-difference gradients of the reference objective (params, X, initial state)."""
    spec, params, X, state, G, G_state = case_arrays(cell, variant, layers, bi)
    params = {k: v.copy() for k, v in params.items()}
    X, state = X.copy(), [tuple(a.copy() for a in s) if isinstance(s, tuple) else s.copy()
                          for s in state]
    f = lambda: reference.objective(spec, params, X, state, G, G_state)
    grads = {k: reference.numeric_grad(f, params[k]) for k in params}
    dX = reference.numeric_grad(f, X)
    dstate = [reference.numeric_grad(f, a) for a in flatten_state(state)]
    return grads, dX, dstate


@_params(AXES)
def test_forward_matches_reference(backend, impl, cell, variant, layers, bi, dtype):
    spec, params, X, state, _, _ = case_arrays(cell, variant, layers, bi)
    be, layer = _build(backend, impl, spec, params, dtype)
    for init in (None, state):
        Y, finals = be.forward(layer, X.astype(dtype), None if init is None else _cast_state(init, dtype))
        Y_ref, finals_ref = reference.forward(spec, params, X, init)
        assert Y.dtype == np.dtype(dtype)
        np.testing.assert_allclose(Y, Y_ref, **allclose("reference", dtype))
        for got, want in zip(flatten_state(finals), flatten_state(finals_ref), strict=True):
            np.testing.assert_allclose(got, want, **allclose("reference", dtype))


@_params(AXES)
def test_params_round_trip(backend, impl, cell, variant, layers, bi, dtype):
    spec, params, *_ = case_arrays(cell, variant, layers, bi)
    be, layer = _build(backend, impl, spec, params, dtype)
    back = be.get_params(layer)
    assert set(back) == set(params)
    for key in params:
        assert back[key].dtype == np.dtype(dtype), key
        np.testing.assert_array_equal(back[key], params[key].astype(dtype), err_msg=key)


@_params(AXES)
def test_vjp_matches_finite_differences(backend, impl, cell, variant, layers, bi, dtype):
    spec, params, X, state, G, G_state = case_arrays(cell, variant, layers, bi)
    be, layer = _build(backend, impl, spec, params, dtype)
    res = be.vjp(layer, X.astype(dtype), _cast_state(state, dtype), G.astype(dtype),
                 _cast_state(G_state, dtype))
    grads, dX, dstate = numeric_grads(spec.cell, spec.gru_variant, layers, bi)
    tol = allclose("finite differences", dtype)
    assert set(res.grads) == set(grads)
    for key in grads:
        np.testing.assert_allclose(res.grads[key], grads[key], **tol, err_msg=key)
    np.testing.assert_allclose(res.dX, dX, **tol, err_msg="dX")
    for i, (got, want) in enumerate(zip(flatten_state(res.dstate), dstate, strict=True)):
        np.testing.assert_allclose(got, want, **tol, err_msg=f"dstate[{i}]")
