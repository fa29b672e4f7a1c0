"""The language-model training loop (`bench.lm.train.train`) over a stub backend.

The stub trainer's losses and states are chosen here, so every number the loop decides can be
checked exactly: the state passed at each step under each partition, the token-weighted train
and validation perplexities, what each epoch writes (checkpoint, JSON log, plot), the stop at a
target, divergence and interruption. The corpus `1..N` (one token per id) makes every id its own
position, so "Y is X shifted by one" reads `Y == X + 1`.
"""
import json
import math

import numpy as np
import pytest

from bench.lm.data import LMData
from bench.lm.train import train
from common.batching import sliding_windows
from common.config import LMConfig, TrainConfig
from common.params import load_params
from common.vocab import Vocab
from stub_backends import NAME, StubLMBackend, install, stub_logits, token_nll

N = 120
WINDOWS = dict(partition="windows", batch_size=5, num_steps=4, num_train=22, num_val=13)
TRAIN_BATCHES = 5     # 22 windows in batches of 5: 5, 5, 5, 5, 2
SAMPLERS = dict(batch_size=3, num_steps=5)


@pytest.fixture(scope="module")
def data():
    tokens = [f"w{i}" for i in range(N)]
    vocab = Vocab(tokens)
    return LMData("stub_corpus", np.asarray(vocab[tokens], dtype=np.int64), vocab, "word", "test")


@pytest.fixture(autouse=True)
def no_plot(request, monkeypatch):
    """Skip drawing perplexity.png (a second per run) except in the tests of the plot."""
    if "plot" not in request.node.name:
        monkeypatch.setattr("bench.core.plots.plot_perplexity", lambda log, path: path)


def _run(monkeypatch, tmp_path, data, losses=lambda n, X: 1.0, scale=1.0, **train_kw):
    be = StubLMBackend(losses, scale)
    install(monkeypatch, "adapter", be)
    cfg = LMConfig("gru", "scratch", len(data.vocab), 4)
    tcfg = TrainConfig(**{"epochs": 2, **train_kw})
    log = train(NAME, cfg, tcfg, data, tmp_path, progress=False)
    return be, be.trainers[-1], log


def _epoch_calls(trainer, log):
    """The trainer's calls split by epoch, using each epoch record's cumulative step."""
    ends = [0] + [e.step for e in log.epochs]
    return [trainer.calls[a:b] for a, b in zip(ends, ends[1:])]


# ---------------------------------------------------------------- state across batches

def test_sequential_carries_each_steps_state_to_the_next_and_resets_per_epoch(
        monkeypatch, tmp_path, data):
    _, trainer, log = _run(monkeypatch, tmp_path, data, partition="sequential", **SAMPLERS)
    first = 1
    for calls in _epoch_calls(trainer, log):
        assert len(calls) >= 2
        states = [state for _, _, state in calls]
        assert states == [None] + [f"state-{n}" for n in range(first, first + len(calls) - 1)]
        first += len(calls)
        for (X0, _, _), (X1, _, _) in zip(calls, calls[1:]):   # rows continue their text
            np.testing.assert_array_equal(X1[:, 0], X0[:, -1] + 1)


@pytest.mark.parametrize("kw", [dict(partition="random", **SAMPLERS), WINDOWS],
                         ids=["random", "windows"])
def test_other_partitions_start_every_batch_from_zeros(monkeypatch, tmp_path, data, kw):
    _, trainer, log = _run(monkeypatch, tmp_path, data, **kw)
    assert len(trainer.calls) == log.epochs[-1].step >= 4
    assert [state for _, _, state in trainer.calls] == [None] * len(trainer.calls)


@pytest.mark.parametrize("kw", [dict(partition="sequential", **SAMPLERS),
                                dict(partition="random", **SAMPLERS), WINDOWS],
                         ids=["sequential", "random", "windows"])
def test_every_batch_is_the_next_token_of_its_input(monkeypatch, tmp_path, data, kw):
    _, trainer, _ = _run(monkeypatch, tmp_path, data, **kw)
    for X, Y, _ in trainer.calls:
        assert X.shape[1] == kw["num_steps"] and X.shape[0] <= kw["batch_size"]
        np.testing.assert_array_equal(Y, X + 1)
        assert X.min() >= 1 and Y.max() <= N


# ---------------------------------------------------------------- perplexity arithmetic

def _expected_train_ppl(calls, losses):
    total = sum(losses[i] * X.size for i, (X, _, _) in enumerate(calls))
    return math.exp(total / sum(X.size for X, _, _ in calls))


def test_train_perplexity_is_exp_of_the_token_weighted_mean_loss(monkeypatch, tmp_path, data):
    """exp of the mean loss per token (d2l's `exp(sum(l * n) / sum(n))`), not the mean of
    exp(loss); the last windows batch has 2 rows, not 5, and counts for 2/22."""
    step_loss = lambda n, X: 0.25 * n
    _, trainer, log = _run(monkeypatch, tmp_path, data, losses=step_loss, **WINDOWS)
    losses = [0.25 * n for n in range(1, len(trainer.calls) + 1)]
    assert log.step_losses == losses
    for e, calls in zip(log.epochs, _epoch_calls(trainer, log)):
        assert [X.shape[0] for X, _, _ in calls] == [5, 5, 5, 5, 2]
        mine = losses[e.step - len(calls):e.step]
        assert e.train_ppl == pytest.approx(_expected_train_ppl(calls, mine), rel=1e-12)
        assert e.tokens == 22 * 4
    assert log.epochs[0].train_ppl != pytest.approx(math.exp(np.mean(losses[:5])), rel=1e-3)


def test_validation_perplexity_is_token_weighted_over_the_held_out_windows(
        monkeypatch, tmp_path, data):
    be, trainer, log = _run(monkeypatch, tmp_path, data, scale=2.0, **WINDOWS)
    _, _, Xv, Yv = sliding_windows(data.ids, 4, 22, 13)
    nll = token_nll(stub_logits(Xv, len(data.vocab), 2.0), Yv)
    expected = math.exp(nll.mean())
    per_batch = math.exp(np.mean([nll[i:i + 5].mean() for i in range(0, 13, 5)]))
    assert abs(per_batch - expected) > 1e-3          # the weighting matters on this data
    assert [e.val_ppl for e in log.epochs] == pytest.approx([expected] * 2, rel=1e-12)
    # each validation ran a model holding the trainer's parameters at the end of its epoch
    assert [float(p["W_hq"][0, 0]) for p in be.built[1:]] == [e.step for e in log.epochs]


def test_every_model_is_built_in_the_dtype_and_on_the_device_asked(monkeypatch, tmp_path, data):
    be, _, _ = _run(monkeypatch, tmp_path, data, dtype="float64", device="gpu:1", **WINDOWS)
    assert be.where == [("float64", "gpu:1")] * 3          # the trained model, two validations


def test_samplers_have_no_validation_perplexity(monkeypatch, tmp_path, data):
    _, _, log = _run(monkeypatch, tmp_path, data, partition="random", **SAMPLERS)
    assert [e.val_ppl for e in log.epochs] == [None, None]


# ---------------------------------------------------------------- what each epoch writes

def test_log_checkpoint_and_plot_hold_the_runs_numbers(monkeypatch, tmp_path, data):
    _, trainer, log = _run(monkeypatch, tmp_path, data, losses=lambda n, X: 1.0 + 0.01 * n,
                           epochs=3, **WINDOWS)
    assert log.status == "finished" and [e.epoch for e in log.epochs] == [1, 2, 3]
    assert [e.step for e in log.epochs] == [5, 10, 15]
    saved = json.loads((tmp_path / "train_log.json").read_text())
    assert saved["status"] == "finished" and saved["backend"] == NAME
    assert saved["step_losses"] == [1.0 + 0.01 * n for n in range(1, 16)]
    assert [e["train_ppl"] for e in saved["epochs"]] == [e.train_ppl for e in log.epochs]
    assert saved["corpus"] == {"name": "stub_corpus", "source": "test", "tokens": N,
                               "vocab_size": N + 1, "token": "word", "path": "test"}
    assert saved["train"]["partition"] == "windows" and saved["model"]["hidden_size"] == 4
    tokens, seconds = sum(e.tokens for e in log.epochs), sum(e.seconds for e in log.epochs)
    assert log.tokens_per_second == pytest.approx(tokens / seconds, rel=1e-12)
    params, meta = load_params(tmp_path / "checkpoint.safetensors")
    assert (meta["epoch"], meta["step"], meta["backend"], meta["corpus"]) == (3, 15, NAME,
                                                                           "stub_corpus")
    np.testing.assert_array_equal(params["W_hq"], np.full((2, 2), 15.0))
    assert meta["vocab"] == data.vocab.to_dict() and meta["train"]["num_train"] == 22
    assert _png_size(tmp_path / "perplexity.png") == (600, 400)


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plot_draws_the_logged_perplexities(monkeypatch, tmp_path, data):
    import matplotlib.figure
    drawn = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, path, **kw):
        drawn.extend([list(line.get_ydata()) for line in fig.axes[0].get_lines()])
        return real(fig, path, **kw)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    _, _, log = _run(monkeypatch, tmp_path, data, losses=lambda n, X: 3.0 / n, **WINDOWS)
    assert drawn == [[e.train_ppl for e in log.epochs], [e.val_ppl for e in log.epochs]]


# ---------------------------------------------------------------- how a run ends

def test_stops_at_the_epoch_whose_perplexity_reaches_the_target(monkeypatch, tmp_path, data):
    step_loss = lambda n, X: 1.5 if n <= TRAIN_BATCHES else 0.75
    _, trainer, log = _run(monkeypatch, tmp_path, data, losses=step_loss, epochs=5,
                           target_ppl=math.exp(0.75), **WINDOWS)
    assert log.status == "target reached" and len(log.epochs) == 2
    assert len(trainer.calls) == 2 * TRAIN_BATCHES
    reached = log.target_reached
    assert (reached["epoch"], reached["tokens"]) == (2, 2 * 22 * 4)
    assert reached["train_ppl"] == pytest.approx(math.exp(0.75), rel=1e-12)
    assert load_params(tmp_path / "checkpoint.safetensors")[1]["epoch"] == 2


def test_target_not_reached_runs_every_epoch(monkeypatch, tmp_path, data):
    _, _, log = _run(monkeypatch, tmp_path, data, losses=lambda n, X: 1.5, epochs=3,
                     target_ppl=math.exp(1.4), **WINDOWS)
    assert log.status == "finished" and len(log.epochs) == 3 and log.target_reached is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_epochs_checkpoint(
        monkeypatch, tmp_path, data, bad):
    step_loss = lambda n, X: bad if n == 8 else 1.0
    _, trainer, log = _run(monkeypatch, tmp_path, data, losses=step_loss, epochs=4, **WINDOWS)
    assert log.status == "diverged" and "step 8 (epoch 2)" in log.message
    assert len(trainer.calls) == 8 and len(log.epochs) == 1
    assert math.nan not in log.step_losses and len(log.step_losses) == 7
    params, meta = load_params(tmp_path / "checkpoint.safetensors")
    assert (meta["epoch"], meta["step"]) == (1, 5) and params["W_hq"][0, 0] == 5.0
    assert log.message.endswith(f"last good checkpoint: {tmp_path / 'checkpoint.safetensors'}")
    assert json.loads((tmp_path / "train_log.json").read_text())["status"] == "diverged"


def test_interrupt_keeps_the_last_epochs_checkpoint(monkeypatch, tmp_path, data):
    def step_loss(n, X):
        if n == 12:
            raise KeyboardInterrupt
        return 1.0
    _, _, log = _run(monkeypatch, tmp_path, data, losses=step_loss, epochs=4, **WINDOWS)
    assert log.status == "interrupted" and log.message.startswith("interrupted (Ctrl-C) at step 11")
    assert load_params(tmp_path / "checkpoint.safetensors")[1]["epoch"] == 2


def test_divergence_in_the_first_epoch_says_no_checkpoint(monkeypatch, tmp_path, data):
    _, _, log = _run(monkeypatch, tmp_path, data, losses=lambda n, X: float("nan"), **WINDOWS)
    assert log.status == "diverged" and log.epochs == []
    assert "last good checkpoint: none" in log.message
    assert not (tmp_path / "checkpoint.safetensors").exists() and not (tmp_path / "perplexity.png").exists()
