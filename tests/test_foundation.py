"""Registry, canonical parameters, records, and the framework-free imports."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bench.core import records
from common import registry
from common.config import LayerSpec
from common.errors import BackendUnavailable, UnknownBackend
from common.params import (cell_keys, check_params, init_params, load_params, param_shapes,
                           prefixes, save_params)
from conftest import ROOT

FRAMEWORKS = ("torch", "mxnet", "jax", "flax", "optax")


@pytest.mark.parametrize("module", ["common", "bench", "bench.cli", "common.registry",
                                    "common.params", "common.corpora", "common.batching",
                                    "torch_impl", "mxnet_impl", "jax_impl"])
def test_import_loads_no_framework(module):
    code = (f"import sys; import {module}; "
            f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_unknown_backend_names_the_choices():
    with pytest.raises(UnknownBackend, match="torch, mxnet, jax"):
        registry.get_backend("tensorflow")


def test_missing_framework_names_the_extra(monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "fake", ("torch_impl", "fakeextra", ("no_such_fw_xyz",)))
    with pytest.raises(BackendUnavailable, match=r"rnnbench\[fakeextra\]"):
        registry.get_backend("fake")
    assert not registry.is_available("fake")


def test_broken_backend_import_names_the_extra(monkeypatch):
    # The framework "exists" but the adapter module cannot be imported.
    monkeypatch.setitem(registry.BACKENDS, "fake", ("no_such_package_xyz", "fakeextra", ("json",)))
    with pytest.raises(BackendUnavailable, match=r"pip install 'rnnbench\[fakeextra\]'"):
        registry.get_backend("fake")


@pytest.mark.parametrize("cell,per_dir", [("rnn", 3), ("lstm", 12), ("gru", 10)])
@pytest.mark.parametrize("layers,bi", [(1, False), (2, True)])
def test_param_shapes_follow_contract(cell, per_dir, layers, bi):
    spec = LayerSpec(cell, 5, 4, layers, bi)
    shapes = param_shapes(spec)
    assert len(shapes) == per_dir * layers * (2 if bi else 1)
    assert shapes["l0.W_x" + cell_keys(cell)[0][3:]] == (5, 4)
    if layers == 2:
        assert shapes[f"l1.{cell_keys(cell)[0]}"] == (4 * (2 if bi else 1), 4)
    assert all(s == (4,) for k, s in shapes.items() if ".b_" in k)


def test_prefix_order_is_state_order():
    assert prefixes(LayerSpec("rnn", 2, 3, 2, True)) == ["l0.", "l0_rev.", "l1.", "l1_rev."]


def test_init_is_seeded_and_scaled():
    spec = LayerSpec("lstm", 3, 16)
    a, b = init_params(spec, seed=1), init_params(spec, seed=1)
    c = init_params(spec, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["l0.W_xi"], c["l0.W_xi"])
    assert np.abs(a["l0.W_xi"]).max() <= 0.25 and np.abs(a["l0.b_i"]).max() > 0
    normal = init_params(spec, seed=1, init="normal", zero_bias=True, dtype="float32")
    assert normal["l0.W_xi"].dtype == np.float32 and not normal["l0.b_i"].any()
    assert 0.005 < normal["l0.W_xi"].std() < 0.02


def test_check_params_names_problems():
    spec = LayerSpec("rnn", 3, 4)
    params = init_params(spec)
    params.pop("l0.b_h")
    params["l0.W_hh"] = np.zeros((4, 5))
    params["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['l0.b_h'\].*unexpected \['extra'\].*l0.W_hh"):
        check_params(params, param_shapes(spec))


def test_layer_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="rnn, lstm, gru"):
        LayerSpec("transformer", 1, 1)
    with pytest.raises(ValueError, match="hidden_size"):
        LayerSpec("rnn", 1, 0)
    with pytest.raises(ValueError, match="reset_after"):
        LayerSpec("gru", 1, 1, gru_variant="sideways")


def test_npz_round_trip_refuses_overwrite(tmp_path):
    params = init_params(LayerSpec("gru", 3, 4, 2, True))
    path = save_params(tmp_path / "p", params, meta={"cell": "gru"})
    back, meta = load_params(path)
    assert meta == {"cell": "gru"} and set(back) == set(params)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_params(path, params)
    save_params(path, {k: v * 0 for k, v in params.items()}, overwrite=True)
    assert not load_params(path)[0]["l0.W_xz"].any()
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]   # no temporary left behind


def test_json_records_atomic_and_not_overwritten(tmp_path):
    path = records.write_json(tmp_path / "r.json", {"x": np.float64(1.5), "a": np.arange(2)})
    assert records.read_json(path) == {"x": 1.5, "a": [0, 1]}
    with pytest.raises(FileExistsError):
        records.write_json(path, {})
    assert json.loads(path.read_text())["x"] == 1.5


def test_new_run_dirs_are_distinct(tmp_path):
    a, b = records.new_run_dir(tmp_path), records.new_run_dir(tmp_path)
    assert a != b and a.is_dir() and b.is_dir()


def test_missing_feature_module_is_not_supported_not_an_install_hint():
    from common.errors import NotSupported
    with pytest.raises(NotSupported, match="no 'no_such_feature' module"):
        registry.get_module("torch", "no_such_feature")
