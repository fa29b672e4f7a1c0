"""Training never loses its last good state, in every backend: divergence (a huge finite loss,
non-finite parameters), SIGTERM, and `resume` giving the run an uninterrupted one would give."""
import json
import os
import signal

import numpy as np
import pytest

from bench.lm import train as lm_train
from bench.lm.data import load_corpus
from bench.parity.tolerances import allclose
from common.config import LMConfig, TrainConfig
from common.params import load_params
from conftest import backend_or_skip

BACKENDS = ["torch", "mxnet", "jax"]


@pytest.fixture(scope="module")
def one_batch():
    """Exactly one batch of 32 x 35 per epoch (sequential partitioning)."""
    return load_corpus("human_numbers", token="char", max_tokens=1200)


@pytest.fixture(scope="module")
def few_batches():
    return load_corpus("human_numbers", token="char", max_tokens=400)


def _cfg(data, cell="rnn"):
    return LMConfig(cell, "scratch", len(data.vocab), 8)


def _log(out):
    return json.loads((out / lm_train.LOG).read_text())


def _checkpoint_is_finite_or_absent(out):
    path = lm_train.find_checkpoint(out)
    return path is None or all(np.isfinite(v).all() for v in load_params(path)[0].values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_loss_stops_the_run_with_its_log(backend, one_batch, tmp_path):
    """lr 1e4 without clipping: the loss explodes; the run ends `diverged`, never crashes."""
    backend_or_skip(backend)
    tcfg = TrainConfig(lr=1e4, clip=None, epochs=6)
    log = lm_train.train(backend, _cfg(one_batch), tcfg, one_batch, tmp_path, progress=False)
    assert log.status == "diverged" and "at step" in log.message
    assert _log(tmp_path)["status"] == "diverged"
    assert _checkpoint_is_finite_or_absent(tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_finite_loss_past_float_range_is_divergence(backend, few_batches, tmp_path,
                                                      monkeypatch):
    """A loss of 800 is finite but exp(800) is not: named, not an OverflowError."""
    _poison(backend, monkeypatch, step=lambda n, loss: 800.0 if n >= 5 else loss)
    log = lm_train.train(backend, _cfg(few_batches), TrainConfig(epochs=3, batch_size=4,
                                                                 num_steps=8),
                         few_batches, tmp_path, progress=False)
    assert log.status == "diverged" and "800 (its perplexity overflows) at step 5" in log.message


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_infinite_lr_never_writes_a_non_finite_checkpoint(backend, one_batch, tmp_path):
    """The first loss is finite and its update makes the weights inf/NaN: the epoch's
    checkpoint is refused, the message names the parameters and the step."""
    backend_or_skip(backend)
    tcfg = TrainConfig(lr=float("inf"), clip=None, epochs=2)
    log = lm_train.train(backend, _cfg(one_batch), tcfg, one_batch, tmp_path, progress=False)
    assert log.status == "diverged", log.message
    assert "parameters became NaN or infinite" in log.message and "step 1 " in log.message
    assert lm_train.find_checkpoint(tmp_path) is None and log.epochs == []
    assert "last good checkpoint: none" in log.message


def test_a_framework_error_mid_run_still_writes_the_log(one_batch, tmp_path):
    """MXNet refuses an infinite learning rate inside its update: the error goes on up (the CLI
    prints it on one line), and the log says where the run stopped."""
    backend_or_skip("mxnet")
    tcfg = TrainConfig(lr=float("inf"), clip=None, epochs=2)
    with pytest.raises(Exception, match="lrs"):
        lm_train.train("mxnet", _cfg(one_batch), tcfg, one_batch, tmp_path, progress=False)
    saved = _log(tmp_path)
    assert saved["status"] == "failed" and "after 0 steps" in saved["message"]
    assert lm_train.find_checkpoint(tmp_path) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_good_checkpoint_is_never_replaced_by_a_non_finite_one(backend, few_batches, tmp_path,
                                                                 monkeypatch):
    def nan_after_epoch_one(params, seen):
        late = seen["steps"] > seen["per_epoch"]
        return {k: v * np.nan for k, v in params.items()} if late else params
    _poison(backend, monkeypatch, params=nan_after_epoch_one)
    log = lm_train.train(backend, _cfg(few_batches), TrainConfig(epochs=3, batch_size=4,
                                                                 num_steps=8),
                         few_batches, tmp_path, progress=False)
    assert log.status == "diverged" and "(epoch 2)" in log.message
    params, meta = load_params(tmp_path / lm_train.CHECKPOINT)
    assert meta["epoch"] == 1 and all(np.isfinite(v).all() for v in params.values())


def _poison(backend, monkeypatch, step=None, at_step=None, params=None):
    """Wrap the backend's trainer: `at_step(n)` runs before the n-th step, `step(n, loss)`
    edits its loss, `params(params, seen)` edits what `trainer.params()` returns."""
    be = backend_or_skip(backend)
    real, seen = be.make_trainer, {"steps": 0, "per_epoch": None}

    def make(*args, **kw):
        trainer = real(*args, **kw)
        real_step, real_params = trainer.step, trainer.params

        def wrapped_step(X, Y, state):
            seen["steps"] += 1
            if at_step:
                at_step(seen["steps"])
            loss, state = real_step(X, Y, state)
            return (step(seen["steps"], loss) if step else loss), state

        def wrapped_params():
            seen["per_epoch"] = seen["per_epoch"] or seen["steps"]  # first call: epoch 1's end
            return params(real_params(), seen) if params else real_params()
        trainer.step, trainer.params = wrapped_step, wrapped_params
        return trainer
    monkeypatch.setattr(type(be), "make_trainer", lambda self, *a, **k: make(*a, **k))


def _kill_self_at(n):
    return lambda step: os.kill(os.getpid(), signal.SIGTERM) if step == n else None


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_keeps_log_and_checkpoint_and_resume_continues_exactly(backend, few_batches,
                                                                       tmp_path, monkeypatch):
    """SIGTERM in epoch 3 of 4: log `interrupted`, checkpoint of epoch 2; `resume` then gives the
    very losses of an uninterrupted run (float64: same batches, same order)."""
    backend_or_skip(backend)
    got = []
    previous = signal.signal(signal.SIGTERM, lambda *a: got.append("unhandled"))
    try:
        cfg, tcfg = _cfg(few_batches, "gru"), TrainConfig(epochs=4, batch_size=4, num_steps=8,
                                                          dtype="float64")
        straight = lm_train.train(backend, cfg, tcfg, few_batches, tmp_path / "a", progress=False)
        per_epoch = straight.epochs[0].step
        _poison(backend, monkeypatch, at_step=_kill_self_at(2 * per_epoch + 2))
        stopped = lm_train.train(backend, cfg, tcfg, few_batches, tmp_path / "b", progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == [] and stopped.status == "interrupted" and "SIGTERM" in stopped.message
    assert _log(tmp_path / "b")["status"] == "interrupted"
    assert load_params(tmp_path / "b" / lm_train.CHECKPOINT)[1]["epoch"] == 2
    monkeypatch.undo()
    resumed = lm_train.resume(tmp_path / "b", progress=False)
    assert resumed.status == "finished" and [e.epoch for e in resumed.epochs] == [1, 2, 3, 4]
    assert resumed.resumed == [{"epoch": 2, "step": 2 * per_epoch, "after": "interrupted"}]
    np.testing.assert_allclose(resumed.step_losses, straight.step_losses, **allclose("resumed run"))


def test_ctrl_c_then_resume_through_the_cli(few_batches, tmp_path, monkeypatch, capsys):
    """`rnnbench train` interrupted (exit 130, the resume command printed), then `--resume`."""
    from bench.cli.main import main

    def interrupt(step):
        if step == 30:
            raise KeyboardInterrupt
    _poison("torch", monkeypatch, at_step=interrupt)
    out = tmp_path / "run"
    argv = ["train", "--hidden", "8", "--epochs", "3", "--batch-size", "4", "--num-steps", "8",
            "--token", "char", "--max-tokens", "400", "--quiet", "--out", str(out)]
    assert main(argv) == 130
    assert f"--resume {out}" in capsys.readouterr().out
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert "finished after 3 epochs" in capsys.readouterr().out
    assert _log(out)["status"] == "finished" and len(_log(out)["epochs"]) == 3


def test_sigterm_to_the_command_line_exits_143_with_the_log(tmp_path):
    """What `timeout` and job schedulers do: a real SIGTERM to a `rnnbench train` process."""
    import subprocess
    import sys
    import time

    from conftest import ROOT
    backend_or_skip("torch")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "bench", "train", "--hidden", "8", "--epochs", "100000",
            "--batch-size", "4", "--num-steps", "8", "--token", "char", "--max-tokens", "400",
            "--quiet", "--out", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not (out / lm_train.LOG).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, stdout
    saved = _log(out)
    assert saved["status"] == "interrupted" and "SIGTERM" in saved["message"]
    assert f"--resume {out}" in stdout and saved["epochs"]
    assert _checkpoint_is_finite_or_absent(out) and lm_train.find_checkpoint(out)
