"""torch_impl: native layout and gate order, devices, kernel errors, code path and info().

What every backend shares (round trip, refusals, states) is in test_convert_backends.py.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reference  # noqa: E402
from bench.parity.tolerances import allclose  # noqa: E402
from conftest import B, H, I, T, case_arrays, make_spec  # noqa: E402
from common.errors import NotSupported, RnnbenchError  # noqa: E402
from common.params import init_params  # noqa: E402
from torch_impl import convert, devices, layers  # noqa: E402
from torch_impl.adapter import BACKEND  # noqa: E402
from test_convert_backends import builtin_cells, impls, shapes  # noqa: E402


def random_native(spec, seed=3):
    """A native layout with every entry drawn, recurrent biases included."""
    module = layers.BUILTINS[spec.cell](spec.input_size, spec.hidden_size, spec.num_layers,
                                        bidirectional=spec.bidirectional, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1, 1, size=tuple(p.shape)) for n, p in module.named_parameters()}


@builtin_cells
@shapes
def test_native_names_and_shapes_match_torch(cell, layers_, bi):
    spec = make_spec(cell, "reset_after", layers_, bi)
    native = convert.to_native(spec, init_params(spec))
    expected = {n: tuple(a.shape) for n, a in random_native(spec).items()}
    assert {n: a.shape for n, a in native.items()} == expected


@builtin_cells
@shapes
def test_native_canonical_native_sums_recurrent_biases(cell, layers_, bi):
    spec = make_spec(cell, "reset_after", layers_, bi)
    native = random_native(spec)
    again = convert.to_native(spec, convert.from_native(spec, native))
    for name in native:
        if name.startswith("weight"):
            np.testing.assert_array_equal(again[name], native[name], err_msg=name)
    for _, sfx in convert.native_suffixes(spec):
        b_ih, b_hh = native[f"bias_ih_{sfx}"], native[f"bias_hh_{sfx}"]
        want_ih, want_hh = b_ih + b_hh, np.zeros_like(b_hh)
        if cell == "gru":  # the candidate's (n) biases stay apart: rows 2H:3H
            want_ih[2 * H:], want_hh[2 * H:] = b_ih[2 * H:], b_hh[2 * H:]
        np.testing.assert_array_equal(again[f"bias_ih_{sfx}"], want_ih)
        np.testing.assert_array_equal(again[f"bias_hh_{sfx}"], want_hh)


@builtin_cells
@pytest.mark.parametrize("layers_,bi", [(2, True)], ids=["L2-bi"])
def test_native_with_recurrent_biases_computes_what_canonical_says(cell, layers_, bi):
    """A torch module with non-zero bias_hh equals the reference on the summed canonical form."""
    spec = make_spec(cell, "reset_after", layers_, bi)
    native = random_native(spec)
    module = layers.BUILTINS[spec.cell](I, H, layers_, bidirectional=bi, dtype=torch.float64)
    module.load_state_dict({k: torch.tensor(v) for k, v in native.items()})
    X = np.random.default_rng(0).normal(size=(T, B, I))
    with torch.no_grad():
        Y, _ = layers.builtin_forward(spec, module, torch.tensor(X))
    Y_ref, _ = reference.forward(spec, convert.from_native(spec, native), X)
    np.testing.assert_allclose(Y.numpy(), Y_ref, **allclose("same function"))


# torch's documented row blocks: LSTM W_ii|W_if|W_ig|W_io, GRU W_ir|W_iz|W_in.
TORCH_DOC_ORDER = {"rnn": ["h"], "lstm": ["i", "f", "c", "o"], "gru": ["r", "z", "h"]}


@builtin_cells
def test_builtin_from_canonical_matches_reference(cell):
    spec, params, X, state, _, _ = case_arrays(cell, "reset_after", 1, True)
    module = layers.make_builtin(spec, params, torch.float64, "cpu")
    with torch.no_grad():
        Y, _ = layers.builtin_forward(spec, module, torch.tensor(X))
    np.testing.assert_allclose(Y.numpy(), reference.forward(spec, params, X)[0],
                               **allclose("same function"))


@builtin_cells
def test_gate_blocks_follow_torch_docs(cell):
    spec = make_spec(cell, "reset_after", 1, False)
    params = init_params(spec)
    native = convert.to_native(spec, params)
    for j, g in enumerate(TORCH_DOC_ORDER[cell]):
        rows = slice(j * H, (j + 1) * H)
        np.testing.assert_array_equal(native["weight_ih_l0"][rows], params[f"l0.W_x{g}"].T, g)
        np.testing.assert_array_equal(native["weight_hh_l0"][rows], params[f"l0.W_h{g}"].T, g)
        np.testing.assert_array_equal(native["bias_ih_l0"][rows], params[f"l0.b_{g}"], g)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_swapping_two_gates_changes_the_builtin_output(cell):
    """The gate test has teeth: exchanging two gates' parameters moves the built-in's output."""
    spec = make_spec(cell, "reset_after", 1, False)
    params = init_params(spec)
    a, b = convert.NATIVE_GATES[cell][:2]
    swapped = dict(params)
    for kind in ("W_x", "W_h", "b_"):
        swapped[f"l0.{kind}{a}"] = params[f"l0.{kind}{b}"]
        swapped[f"l0.{kind}{b}"] = params[f"l0.{kind}{a}"]
    X = np.random.default_rng(0).normal(size=(T, B, I))
    Y_ref, _ = reference.forward(spec, params, X)
    with torch.no_grad():
        Y_swapped, _ = layers.builtin_forward(
            spec, layers.make_builtin(spec, swapped, torch.float64, "cpu"), torch.tensor(X))
    assert np.abs(Y_swapped.numpy() - Y_ref).max() > 1e-3


@builtin_cells
def test_bias_gradient_is_input_side_not_sum(cell):
    spec = make_spec(cell, "reset_after", 1, True)
    native_grads = random_native(spec, seed=5)
    grads = convert.grads_from_native(spec, native_grads)
    for prefix, sfx in convert.native_suffixes(spec):
        g_ih, g_hh = native_grads[f"bias_ih_{sfx}"], native_grads[f"bias_hh_{sfx}"]
        for j, g in enumerate(convert.NATIVE_GATES[cell]):
            rows = slice(j * H, (j + 1) * H)
            np.testing.assert_array_equal(grads[f"{prefix}b_{g}"], g_ih[rows])
        if cell == "gru":
            np.testing.assert_array_equal(grads[f"{prefix}b_hn"], g_hh[2 * H:])


@builtin_cells
def test_builtin_bias_gradients_agree_on_both_sides(cell):
    """Why the chain rule holds: with b_ih + b_hh, torch gives both sides the same gradient."""
    spec = make_spec(cell, "reset_after", 1, False)
    module = layers.make_builtin(spec, init_params(spec), torch.float64, "cpu")
    Y, _ = layers.builtin_forward(spec, module, torch.ones(T, B, I, dtype=torch.float64))
    g_ih, g_hh = torch.autograd.grad(Y.square().sum(), [module.bias_ih_l0, module.bias_hh_l0])
    rows = slice(0, 2 * H) if cell == "gru" else slice(None)  # GRU's n block differs by R
    torch.testing.assert_close(g_ih[rows], g_hh[rows], **allclose("same function, relative too"))


def test_cpu_resolves():
    assert devices.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda", "cuda:0"])
def test_gpu_without_cuda_says_what_to_install(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RnnbenchError, match="sees none|CPU-only build") as info:
        devices.resolve_device(name)
    assert "GPU" in str(info.value)


@pytest.fixture
def tf32_on():
    """TF32 switched on, restored afterwards (torch's flag objects defeat monkeypatch's undo)."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    saved = [f.allow_tf32 for f in flags]
    for f in flags:
        f.allow_tf32 = True
    yield
    for f, value in zip(flags, saved):
        f.allow_tf32 = value


def test_gpu_turns_tf32_off(monkeypatch, tf32_on):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("gpu").type == "cuda"
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False


@impls
def test_kernel_failure_becomes_not_supported_quoting_torch(monkeypatch, impl):
    def fail(*args, **kwargs):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')
    monkeypatch.setattr("torch_impl.adapter.builtin_forward", fail)
    monkeypatch.setattr("torch_impl.adapter.forward_of", lambda impl: fail)
    spec = make_spec("lstm", "reset_after", 1, False)
    with pytest.raises(NotSupported, match="not implemented for 'Half'"):
        BACKEND.build_layer(spec, impl, init_params(spec), "float32")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_builtin_code_path_names_the_kernel_that_ran(cell, dtype):
    spec, params, X, _, _, _ = case_arrays(cell, "reset_after", 1, False)
    layer = BACKEND.build_layer(spec, "builtin", params, dtype)
    with torch.profiler.profile() as prof:
        BACKEND.forward(layer, X.astype(dtype))
    ran_onednn = any(e.name == "aten::mkldnn_rnn_layer" for e in prof.events())
    assert ran_onednn == ("oneDNN" in layer.code_path), layer.code_path


@pytest.mark.parametrize("cell,variant", [("rnn", "reset_after"), ("lstm", "reset_after"),
                                          ("gru", "reset_after"), ("gru", "reset_before")],
                         ids=["rnn", "lstm", "gru_after", "gru_before"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_code_path_names_its_products_and_never_runs_the_builtin_kernel(cell, variant,
                                                                              dtype):
    spec, params, X, _, G, _ = case_arrays(cell, variant, 1, True)
    layer = BACKEND.build_layer(spec, "fast", params, dtype)
    with torch.profiler.profile() as prof:
        BACKEND.vjp(layer, X.astype(dtype), None, G.astype(dtype))
    names = {e.name for e in prof.events()}
    assert not names & {"aten::mkldnn_rnn_layer", "aten::lstm", "aten::gru", "aten::rnn_tanh"}
    ran_onednn = "mkldnn::_linear_pointwise" in names
    assert ran_onednn == ("oneDNN" in layer.code_path), (layer.code_path, sorted(names))
    assert layer.code_path.startswith("fast scratch")


def test_info_reports_the_framework():
    info = BACKEND.info()
    json.dumps(info)
    assert info["versions"]["torch"] == torch.__version__
    assert info["details"]["num_threads"] == torch.get_num_threads() >= 1
    assert info["details"]["num_interop_threads"] >= 1
    assert info["details"]["cuda_available"] == torch.cuda.is_available()
    assert info["devices"][0] == "cpu" and len(info["devices"]) == 1 + torch.cuda.device_count()
    assert isinstance(info["details"]["mkldnn_available"], bool)
