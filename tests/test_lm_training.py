"""Language-model training across frameworks: trajectories, checkpoints, generation, failures."""
import json

import numpy as np
import pytest

from bench.lm import generate as gen
from bench.lm import trajectory
from bench.lm.data import load_corpus
from bench.lm.train import train
from bench.parity.tolerances import allclose
from common.config import LMConfig, TrainConfig
from common.errors import DataError
from common.params import init_lm_params, lm_param_shapes, load_params
from common.registry import get_backend
from conftest import backend_or_skip

BACKENDS = ["torch", "mxnet", "jax"]
IMPLS = ["scratch", "builtin"]


@pytest.fixture(scope="module")
def tiny_data():
    """A small character corpus from the generated Human Numbers text."""
    return load_corpus("human_numbers", token="char", max_tokens=3000)


def _trajectory(backend, impl, cell, data):
    backend_or_skip(backend)
    return trajectory.losses(backend, impl, cell, data)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", ["mxnet", "jax"])
def test_float64_sgd_trajectory_matches_torch_scratch(backend, impl, cell, tiny_data):
    """The first 50 steps' losses agree to 1e-8 relative with the same params and batches."""
    reference = _trajectory("torch", "scratch", cell, tiny_data)
    losses = _trajectory(backend, impl, cell, tiny_data)
    assert losses[-1] < losses[0]                        # it is really training
    np.testing.assert_allclose(losses, reference, **allclose("trajectory"))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_fast_trajectory_matches_torch_scratch(backend, cell, tiny_data):
    """The fast stack (hand-written backward) trains along d2l's scratch trajectory."""
    np.testing.assert_allclose(_trajectory(backend, "fast", cell, tiny_data),
                               _trajectory("torch", "scratch", cell, tiny_data),
                               **allclose("trajectory"))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float64_torch_builtin_trajectory(cell, tiny_data):
    np.testing.assert_allclose(_trajectory("torch", "builtin", cell, tiny_data),
                               _trajectory("torch", "scratch", cell, tiny_data),
                               **allclose("trajectory"))


def _short_run(backend, tmp_path, data, epochs=2, **train_kw):
    cfg = LMConfig("gru", "scratch", len(data.vocab), 16)
    tcfg = TrainConfig(lr=1.0, epochs=epochs, batch_size=4, num_steps=8, **train_kw)
    return cfg, train(backend, cfg, tcfg, data, tmp_path, progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_training_reduces_perplexity_and_writes_outputs(backend, tmp_path, tiny_data):
    backend_or_skip(backend)
    cfg, log = _short_run(backend, tmp_path, tiny_data, epochs=3)
    assert log.status == "finished"
    assert log.epochs[-1].train_ppl < log.epochs[0].train_ppl < len(tiny_data.vocab) + 1
    assert len(log.step_losses) == log.epochs[-1].step
    first = 0
    for e in log.epochs:   # sequential batches are all 4 x 8: the plain mean is token-weighted
        losses = log.step_losses[first:e.step]
        assert e.tokens == 4 * 8 * len(losses) and len(losses) >= 50
        assert e.train_ppl == pytest.approx(np.exp(np.mean(losses)), rel=1e-9)
        first = e.step
    saved = json.loads((tmp_path / "train_log.json").read_text())
    assert saved["status"] == "finished" and len(saved["epochs"]) == 3
    assert [e["train_ppl"] for e in saved["epochs"]] == [e.train_ppl for e in log.epochs]
    head = (tmp_path / "perplexity.png").read_bytes()[:24]
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (600, 400)
    params, meta = load_params(tmp_path / "checkpoint.safetensors")
    assert meta["epoch"] == 3 and meta["backend"] == backend and meta["step"] == log.epochs[-1].step
    assert {k: v.shape for k, v in params.items()} == lm_param_shapes(cfg)


@pytest.mark.parametrize("source,target", [("torch", "jax"), ("jax", "mxnet"), ("mxnet", "torch")])
def test_checkpoint_generates_the_same_greedy_text_in_another_framework(source, target, tmp_path,
                                                                       tiny_data):
    backend_or_skip(source), backend_or_skip(target)
    _short_run(source, tmp_path, tiny_data, dtype="float64")
    texts = [gen.generate(*_loaded(tmp_path, name), "one hundred", 30)
             for name in (source, target)]
    assert texts[0] == texts[1] and texts[0].startswith("one hundred") and len(texts[0]) == 41


def _loaded(tmp_path, backend):
    be, model, vocab, token, _ = gen.load_checkpoint(tmp_path / "checkpoint.safetensors", backend)
    return be, model, vocab, token


def test_sampling_is_seeded_and_alpha_sharpens(tmp_path, tiny_data):
    backend_or_skip("torch")
    _short_run("torch", tmp_path, tiny_data)
    args = _loaded(tmp_path, "torch")
    a = gen.generate(*args, "one", 40, alpha=1.0, seed=5)
    assert a == gen.generate(*args, "one", 40, alpha=1.0, seed=5)
    assert a != gen.generate(*args, "one", 40, alpha=1.0, seed=6)
    assert gen.generate(*args, "one", 40, alpha=1e4, seed=1) == gen.generate(*args, "one", 40)


def test_prefix_outside_vocabulary_names_the_characters(tiny_data):
    with pytest.raises(DataError, match=r"'Z', 'q'"):
        gen.prefix_ids("one Zq", tiny_data.vocab, "char")
    with pytest.raises(DataError, match="empty"):
        gen.prefix_ids("", tiny_data.vocab, "char")


@pytest.mark.parametrize("backend", ["torch"])
def test_divergence_stops_naming_the_step_and_keeps_checkpoint(backend, tmp_path, tiny_data,
                                                              monkeypatch):
    be = backend_or_skip(backend)
    real = be.make_trainer

    def poisoned(*args, **kw):
        trainer, calls = real(*args, **kw), {"n": 0}
        step = trainer.step

        def bad_step(X, Y, state):
            calls["n"] += 1
            loss, state = step(X, Y, state)
            return (float("nan") if calls["n"] == 150 else loss), state
        trainer.step = bad_step
        return trainer
    monkeypatch.setattr(type(be), "make_trainer", lambda self, *a, **k: poisoned(*a, **k))
    _, log = _short_run(backend, tmp_path, tiny_data, epochs=5)
    assert log.status == "diverged" and "step 150" in log.message
    assert "last good checkpoint" in log.message and len(log.epochs) >= 1
    _, meta = load_params(tmp_path / "checkpoint.safetensors")     # the epoch before the NaN
    assert meta["epoch"] == len(log.epochs) and meta["step"] == log.epochs[-1].step < 150


def test_corpus_too_small_for_the_batch_is_a_clear_error(tmp_path):
    data = load_corpus("human_numbers", token="char", max_tokens=30)
    backend_or_skip("torch")
    with pytest.raises(DataError, match="num_steps"):
        _short_run("torch", tmp_path, data)


@pytest.mark.parametrize("impl", ["scratch", "fast", "builtin"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_log_says_which_code_ran(backend, impl, tmp_path, tiny_data):
    backend_or_skip(backend)
    cfg = LMConfig("lstm", impl, len(tiny_data.vocab), 8)
    log = train(backend, cfg, TrainConfig(lr=1.0, epochs=1, batch_size=4, num_steps=8),
                tiny_data, tmp_path, progress=False)
    saved = json.loads((tmp_path / "train_log.json").read_text())
    assert saved["code_path"] == log.code_path != ""
    others = {i: get_backend(backend).build_lm(LMConfig("lstm", i, len(tiny_data.vocab), 8),
                                                init_lm_params(cfg, 0), "float32", "cpu").code_path
              for i in ("scratch", "fast", "builtin")}
    assert len(set(others.values())) == 3 and saved["code_path"] == others[impl]
