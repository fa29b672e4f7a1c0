"""jax_impl: Flax layout and gate names, devices, x64 scoping, jit, code path and info().

What every backend shares (round trip, refusals, states) is in test_convert_backends.py.
"""
import json

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")

import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

import reference  # noqa: E402
from bench.parity.tolerances import allclose  # noqa: E402
from conftest import B, H, I, T, case_arrays, make_spec  # noqa: E402
from common.errors import NotSupported, RnnbenchError  # noqa: E402
from common.params import init_params  # noqa: E402
from jax_impl import convert, devices, layers  # noqa: E402
from jax_impl import model as jax_model  # noqa: E402
from jax_impl.adapter import BACKEND  # noqa: E402
from test_convert_backends import builtin_cells, impls, shapes  # noqa: E402

FLAX_CELLS = {"rnn": [nn.SimpleCell], "lstm": [nn.LSTMCell, nn.OptimizedLSTMCell],
              "gru": [nn.GRUCell]}


def flax_init_tree(spec):
    """Flax's own parameter tree for `spec` (flattened with `/`), shapes only."""
    module = layers.BuiltinStack(spec, jnp.float32)
    X = jnp.zeros((T, B, spec.input_size))
    zeros = layers.zero_states(spec, X.shape[1], X.dtype, None)
    carries = [layers._to_flax_carry(spec, s) for s in zeros]
    shapes_ = jax.eval_shape(module.init, jax.random.key(0), X, carries)["params"]
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes_, sep="/").items()}


def random_native(spec, seed=3):
    """A native layout with every entry drawn, recurrent biases (LSTM `h*`, GRU `hn`) included."""
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1, 1, size=shape) for n, shape in flax_init_tree(spec).items()}


@builtin_cells
@shapes
def test_native_names_and_shapes_match_flax(cell, layers_, bi):
    """Our names are exactly the tree Flax itself initialises: nothing missing, nothing extra."""
    spec = make_spec(cell, "reset_after", layers_, bi)
    native = convert.to_native(spec, init_params(spec))
    assert {n: a.shape for n, a in native.items()} == flax_init_tree(spec)


@builtin_cells
def test_every_flax_cell_class_has_the_layout(cell):
    """LSTMCell and OptimizedLSTMCell share one tree, so either can take convert.py's params."""
    table = convert.cell_table(cell)
    for cls in FLAX_CELLS[cell]:
        carry = cls(features=H).initialize_carry(jax.random.key(1), (B, I))
        variables = jax.eval_shape(cls(features=H).init, jax.random.key(0), carry,
                                   jnp.zeros((B, I)))
        tree = traverse_util.flatten_dict(variables["params"], sep="/")
        assert set(tree) == set(table.values()), cls.__name__
        for key, name in table.items():
            want = (I, H) if key.startswith("W_x") else (H, H) if key.startswith("W_h") else (H,)
            assert tree[name].shape == want, (cls.__name__, key)


@builtin_cells
@shapes
def test_native_canonical_native_is_exact_with_recurrent_biases(cell, layers_, bi):
    """Flax has one bias per gate (LSTM's on the recurrent side): nothing to sum, all kept."""
    spec = make_spec(cell, "reset_after", layers_, bi)
    native = random_native(spec)
    again = convert.to_native(spec, convert.from_native(spec, native))
    assert set(again) == set(native)
    for name in native:
        np.testing.assert_array_equal(again[name], native[name], err_msg=name)


@builtin_cells
def test_native_with_recurrent_biases_computes_what_canonical_says(cell):
    """Flax run on arbitrary native params equals the reference on their canonical reading."""
    spec = make_spec(cell, "reset_after", 2, True)
    native = random_native(spec)
    X = np.random.default_rng(0).normal(size=(T, B, I))
    with devices.compute_scope(jax.devices("cpu")[0], "float64"):
        Y, _ = layers.builtin_forward(spec, native, jnp.asarray(X))
        Y = np.asarray(Y)
    Y_ref, _ = reference.forward(spec, convert.from_native(spec, native), X)
    np.testing.assert_allclose(Y, Y_ref, **allclose("same function"))


# Flax's gate letters, from its source: LSTM i, f, g, o (g the candidate); GRU r, z, n.
FLAX_NAMES = {"rnn": {"W_xh": "i/kernel", "W_hh": "h/kernel", "b_h": "i/bias"},
              "lstm": {"W_xc": "ig/kernel", "W_hc": "hg/kernel", "b_c": "hg/bias",
                       "W_xf": "if/kernel", "b_i": "hi/bias", "W_ho": "ho/kernel"},
              "gru": {"W_xz": "iz/kernel", "W_hr": "hr/kernel", "b_z": "iz/bias",
                      "b_h": "in/bias", "b_hn": "hn/bias", "W_hh": "hn/kernel"}}


@builtin_cells
def test_canonical_keys_land_on_flax_gates(cell):
    table = convert.cell_table(cell)
    for key, name in FLAX_NAMES[cell].items():
        assert table[key] == name, key


@pytest.mark.parametrize("cell,a,b", [("lstm", "i", "f"), ("lstm", "o", "c"), ("gru", "z", "r")],
                         ids=["lstm-i-f", "lstm-o-c", "gru-z-r"])
def test_swapping_two_gates_breaks_agreement(cell, a, b):
    """The mapping has teeth: with two gates exchanged, Flax no longer matches the reference."""
    spec, params, X, _, _, _ = case_arrays(cell, "reset_after", 1, False)
    swapped = dict(params)
    for kind in ("W_x", "W_h", "b_"):
        swapped[f"l0.{kind}{a}"], swapped[f"l0.{kind}{b}"] = (params[f"l0.{kind}{b}"],
                                                               params[f"l0.{kind}{a}"])
    Y_ref, _ = reference.forward(spec, params, X)
    with devices.compute_scope(jax.devices("cpu")[0], "float64"):
        run = lambda p: np.asarray(layers.builtin_forward(
            spec, convert.to_native(spec, p), jnp.asarray(X))[0])
        np.testing.assert_allclose(run(params), Y_ref, **allclose("same function"))
        assert np.abs(run(swapped) - Y_ref).max() > 1e-3


def test_from_native_refuses_a_foreign_tree():
    """A bias Flax's LSTM does not have (input side) is refused, not silently dropped."""
    spec = make_spec("lstm", "reset_after", 1, False)
    native = convert.to_native(spec, init_params(spec))
    native["layer_0/cell/ii/bias"] = np.zeros(H)
    with pytest.raises(ValueError, match=r"unexpected \['layer_0/cell/ii/bias'\]"):
        convert.from_native(spec, native)


@builtin_cells
def test_gradients_map_one_to_one(cell):
    spec = make_spec(cell, "reset_after", 1, True)
    native_grads = random_native(spec, seed=5)
    grads = convert.grads_from_native(spec, native_grads)
    for key, name in convert.name_map(spec).items():
        np.testing.assert_array_equal(grads[key], native_grads[name], err_msg=key)


@builtin_cells
def test_flax_cell_defaults_are_the_contract(cell):
    """tanh activations, sigmoid gates, no residual: the defaults the built-in path relies on."""
    flax_cell = layers.BUILTINS[cell](features=H)
    assert flax_cell.activation_fn is jnp.tanh
    assert getattr(flax_cell, "gate_fn", jax.nn.sigmoid) is jax.nn.sigmoid
    assert getattr(flax_cell, "residual", False) is False


def test_cpu_resolves():
    device = devices.resolve_device("CPU")
    assert device.platform == "cpu" and device == jax.devices("cpu")[0]


@pytest.mark.parametrize("name", ["gpu", "cuda", "cuda:0"])
def test_gpu_without_one_says_what_to_install(monkeypatch, name):
    monkeypatch.setattr(devices, "_gpus", lambda: [])
    with pytest.raises(RnnbenchError, match=r"GPU.*jax\[cuda12\]"):
        devices.resolve_device(name)


def test_gpu_is_found_when_jax_sees_one(monkeypatch):
    fake = [object(), object()]
    monkeypatch.setattr(devices, "_gpus", lambda: fake)
    assert devices.resolve_device("gpu") is fake[0]
    assert devices.resolve_device("cuda:1") is fake[1]
    with pytest.raises(RnnbenchError, match="jax sees 2"):
        devices.resolve_device("gpu:2")


@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu"])
def test_scope_sets_highest_precision_on_gpu_only_and_undoes_it(monkeypatch, gpu):
    monkeypatch.setattr(devices, "is_gpu", lambda device: gpu)
    cpu, before = jax.devices("cpu")[0], jax.config.jax_default_matmul_precision
    with devices.compute_scope(cpu, "float32"):
        assert jax.config.jax_default_matmul_precision == ("highest" if gpu else before)
        assert jax.config.jax_default_device == cpu
    assert jax.config.jax_default_matmul_precision == before
    assert jax.config.jax_default_device is None


@impls
def test_float64_does_not_leak_x64(impl):
    spec, params, X, _, _, _ = case_arrays("rnn", "reset_after", 1, False)
    layer = BACKEND.build_layer(spec, impl, params, "float64")
    Y, _ = BACKEND.forward(layer, X)
    assert Y.dtype == np.float64
    assert jnp.zeros(1).dtype == jnp.float32
    assert not jax.config.read("jax_enable_x64")


def test_float64_without_x64_is_not_supported_quoting_jax(monkeypatch):
    """If x64 cannot be switched on, JAX would truncate to float32: refuse, with JAX's words."""
    monkeypatch.setattr(jax_model, "compute_scope", lambda device, dtype: devices.compute_scope(
        device, "float32"))
    spec = make_spec("rnn", "reset_after", 1, False)
    with pytest.raises(NotSupported, match="float64.*not available.*jax_enable_x64"):
        BACKEND.build_layer(spec, "scratch", init_params(spec), "float64")


@impls
def test_pure_forward_takes_none_states_inside_jit(impl):
    """The drivers are plain functions: jittable by a caller, None states meaning zeros."""
    spec, params, X, _, _, _ = case_arrays("lstm", "reset_after", 1, False)
    params = convert.to_native(spec, params) if impl == "builtin" else params
    run = layers.scratch_forward if impl == "scratch" else layers.builtin_forward
    with devices.compute_scope(jax.devices("cpu")[0], "float64"):
        X = jnp.asarray(X)
        Y_none, _ = jax.jit(run, static_argnums=0)(spec, params, X, None)
        Y_zero, _ = run(spec, params, X, layers.zero_states(spec, X.shape[1], X.dtype, None))
        np.testing.assert_allclose(np.asarray(Y_none), np.asarray(Y_zero),
                                   **allclose("default state"))


@pytest.mark.parametrize("impl,cell,bi,expected", [
    ("scratch", "gru", False, "scratch cells under lax.scan (autodiff backward)"),
    ("fast", "gru", False, "fast scratch: gates fused, input projection hoisted, lax.scan, "
                           "hand-written backward (custom_vjp)"),
    ("builtin", "lstm", True, "flax.linen.OptimizedLSTMCell in nn.Bidirectional(nn.RNN)"),
    ("builtin", "rnn", False, "flax.linen.SimpleCell in nn.RNN")],
    ids=["scratch", "fast", "bi", "uni"])
def test_code_path_names_what_runs(impl, cell, bi, expected):
    spec = make_spec(cell, "reset_after", 1, bi)
    layer = BACKEND.build_layer(spec, impl, init_params(spec), "float32")
    assert layer.code_path.startswith(expected) and layer.code_path.endswith("XLA cpu")


def test_info_reports_the_framework():
    import flax
    import jaxlib
    import optax
    info = BACKEND.info()
    json.dumps(info)
    assert info["versions"] == {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                                "flax": flax.__version__, "optax": optax.__version__}
    assert info["details"]["default_backend"] == jax.default_backend()
    assert len(info["devices"]) == len(jax.devices()) >= 1
    assert info["details"]["x64_default"] is False
    assert info["threads"]["cpu_count"] >= 1
