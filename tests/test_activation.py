"""The RNN cell's `activation` option: validation, the ReLU in every backend, and the parity
harness's ReLU cases."""
import numpy as np
import pytest

from bench.parity import harness as parity
from bench.parity.tolerances import allclose
from common.config import LayerSpec, LMConfig
from common.errors import NotSupported
from common.params import init_params
from common.registry import backend_names


def test_activation_is_validated_and_rnn_only():
    assert LayerSpec("rnn", 3, 4).activation == "tanh"
    assert LayerSpec("rnn", 3, 4, activation="relu").label == "rnn[relu]-L1-uni"
    with pytest.raises(ValueError, match="choose one of tanh, relu"):
        LayerSpec("rnn", 3, 4, activation="sigmoid")
    with pytest.raises(ValueError, match="rnn cell only"):
        LayerSpec("lstm", 3, 4, activation="relu")
    assert LMConfig("rnn", "scratch", 5, 4, activation="relu").layer_spec.activation == "relu"


def _relu_reference(params, X):
    H = np.zeros((X.shape[1], params["l0.W_hh"].shape[0]))
    out = []
    for x in X:
        H = np.maximum(x @ params["l0.W_xh"] + H @ params["l0.W_hh"] + params["l0.b_h"], 0)
        out.append(H)
    return np.stack(out)


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_relu_rnn_matches_numpy(backend, impl):
    from tests.conftest import backend_or_skip
    spec = LayerSpec("rnn", 3, 4, activation="relu")
    params = init_params(spec, seed=1)
    X = np.random.default_rng(0).normal(size=(5, 2, 3))
    be = backend_or_skip(backend)
    try:
        layer = be.build_layer(spec, impl, params, "float64")
    except NotSupported as exc:
        assert backend == "mxnet" and impl == "builtin" and "float32" in str(exc)
        layer = be.build_layer(spec, impl, params, "float32")
        Y, _ = be.forward(layer, X.astype("float32"))
        np.testing.assert_allclose(Y, _relu_reference(params, X),
                                   **allclose("same function, default rtol", "float32"))
        return
    Y, _ = be.forward(layer, X)
    ref = _relu_reference(params, X)
    assert (ref == 0).any() and (ref > 0).any()   # both sides of the kink are exercised
    np.testing.assert_allclose(Y, ref, **allclose("same function, default rtol"))


def test_parity_cases_include_relu_rnn():
    cases = parity.default_cases(quick=True)
    relu = [c for c in cases if c.activation == "relu"]
    assert {c.dtype for c in relu} == {"float32", "float64"} and all(c.cell == "rnn" for c in relu)
    assert relu[0].spec().activation == "relu" and relu[0].cell_label == "rnn[relu]"


def test_train_cli_refuses_relu_for_lstm_in_one_line(capsys, tmp_path):
    from bench.cli.main import main
    rc = main(["train", "--cell", "lstm", "--activation", "relu", "--corpus", "human_numbers",
               "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "rnn cell only" in err and len(err.strip().splitlines()) == 1
