"""The translation training loop (`bench.translate.runner.train`) over a stub `seq2seq` module.

Rows are tagged: column 0 of row i's source, decoder input and label is i, so the tests can
see which rows each step got. The stub's losses and logits are chosen here, so the epoch's
train loss, the masked, token-weighted validation loss and what each epoch writes are checked
exactly.
"""
import math

import numpy as np
import pytest

from bench.translate import runner as translate
from common.corpora import FraEng
from common.params import load_params
from common.seq2seq import Seq2SeqConfig, TranslateConfig
from common.vocab import Vocab
from stub_backends import NAME, install, log_softmax

ROWS, NUM_TRAIN, STEPS, V = 30, 22, 4, 40


@pytest.fixture(scope="module")
def data():
    vocab = Vocab([f"t{i}" for i in range(V - 1)])
    assert len(vocab) == V
    rng = np.random.default_rng(0)
    tagged = lambda: np.concatenate([np.arange(ROWS)[:, None],
                                     rng.integers(0, V, (ROWS, STEPS - 1))], axis=1)
    valid = 1 + np.arange(ROWS) % STEPS           # 1..STEPS tokens that count, the rest padding
    return FraEng(vocab, vocab, tagged(), valid.copy(), tagged(), tagged(), valid,
                  [["x"]] * ROWS, [["y"]] * ROWS, NUM_TRAIN, STEPS)


class StubTrainer:
    def __init__(self, losses):
        self.losses, self.calls = losses, []

    def step(self, src, dec_in, label, valid):
        self.calls.append((src.copy(), dec_in.copy(), label.copy(), valid.copy()))
        return float(self.losses(len(self.calls))), None

    def params(self):
        return {"decoder.b_q": np.full(3, float(len(self.calls)))}


class StubSeq2Seq:
    """The `seq2seq` module of a backend: logits `row % 3` at the label of the row's tag."""

    def __init__(self, losses):
        self.losses, self.trainers, self.forwards = losses, [], []

    def build_seq2seq(self, cfg, params, dtype, device):
        return type("Model", (), {"code_path": "stub code path"})()

    def make_trainer(self, model, lr, clip, dropout, seed):
        self.trainers.append(StubTrainer(self.losses))
        return self.trainers[-1]

    def forward(self, model, src, dec_in):
        self.forwards.append(src[:, 0].copy())
        return _logits(src)


def _logits(src):
    logits = np.zeros((len(src), STEPS, V))
    logits[np.arange(len(src)), :, src[:, 0] % V] = (src[:, 0] % 3)[:, None]
    return logits


def _train(monkeypatch, tmp_path, data, losses=lambda n: 1.0, **kw):
    mod = StubSeq2Seq(losses)
    install(monkeypatch, "seq2seq", mod)
    cfg = Seq2SeqConfig("scratch", V, V, 4, 4, 1)
    tcfg = TranslateConfig(**{"epochs": 2, "batch_size": 8, "num_steps": STEPS,
                              "num_train": NUM_TRAIN, "num_val": ROWS - NUM_TRAIN, **kw})
    run = translate.train(NAME, cfg, tcfg, data, tmp_path, params={}, progress=False)
    return mod, mod.trainers[-1], run


def test_each_epoch_shuffles_every_training_row_once_and_keeps_rows_aligned(
        monkeypatch, tmp_path, data):
    _, trainer, run = _train(monkeypatch, tmp_path, data, epochs=3)
    assert [len(s) for s, _, _, _ in trainer.calls] == [8, 8, 6] * 3   # d2l: last batch smaller
    epochs = [np.concatenate([s[:, 0] for s, _, _, _ in trainer.calls[i:i + 3]])
              for i in range(0, 9, 3)]
    for rows in epochs:
        assert sorted(rows.tolist()) == list(range(NUM_TRAIN))     # no validation row trains
    assert len({tuple(r) for r in epochs}) == 3                    # a new order every epoch
    for s, d, y, v in trainer.calls:
        assert (d[:, 0] == s[:, 0]).all() and (y[:, 0] == s[:, 0]).all()
        np.testing.assert_array_equal(v, 1 + s[:, 0] % STEPS)


def test_train_loss_is_the_mean_of_the_epochs_batch_losses(monkeypatch, tmp_path, data):
    _, _, run = _train(monkeypatch, tmp_path, data, losses=lambda n: 0.5 * n)
    assert run.log.step_losses == [0.5 * n for n in range(1, 7)]
    assert [e.train_loss for e in run.log.epochs] == pytest.approx([1.0, 2.5], rel=1e-12)
    assert [e.step for e in run.log.epochs] == [3, 6]


def test_validation_loss_is_masked_and_token_weighted(monkeypatch, tmp_path, data):
    mod, _, run = _train(monkeypatch, tmp_path, data, batch_size=5)
    src, label, valid = data.src[NUM_TRAIN:], data.label[NUM_TRAIN:], data.label_valid_len[NUM_TRAIN:]
    nll = -np.take_along_axis(log_softmax(_logits(src)), label[..., None], axis=-1)[..., 0]
    mask = np.arange(STEPS)[None, :] < valid[:, None]
    expected = (nll * mask).sum() / mask.sum()
    padded = nll.mean()
    per_batch = np.mean([(nll[i:i + 5] * mask[i:i + 5]).sum() / mask[i:i + 5].sum()
                         for i in (0, 5)])
    assert min(abs(padded - expected), abs(per_batch - expected)) > 1e-3
    assert [e.val_loss for e in run.log.epochs] == pytest.approx([expected] * 2, rel=1e-12)
    # every validation row once per epoch, in order, in batches of 5 and 3
    np.testing.assert_array_equal(np.concatenate(mod.forwards),
                                  np.tile(np.arange(NUM_TRAIN, ROWS), 2))


def test_checkpoint_and_log_after_each_epoch(monkeypatch, tmp_path, data):
    _, _, run = _train(monkeypatch, tmp_path, data, epochs=3)
    assert run.log.status == "finished" and run.log.code_path == "stub code path"
    params, meta = load_params(tmp_path / translate.CHECKPOINT)
    assert (meta["kind"], meta["backend"], meta["epoch"], meta["step"]) == ("seq2seq", NAME, 3, 9)
    np.testing.assert_array_equal(params["decoder.b_q"], np.full(3, 9.0))
    assert meta["src_vocab"] == data.src_vocab.to_dict() and meta["train"]["num_train"] == NUM_TRAIN
    assert run.log.data == {"name": "fra_eng", "num_train": NUM_TRAIN, "num_val": 8,
                            "num_steps": STEPS, "src_vocab_size": V, "tgt_vocab_size": V}
    assert run.log.train_seconds == pytest.approx(sum(e.seconds for e in run.log.epochs))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_the_last_good_epoch(monkeypatch, tmp_path, data, bad):
    _, trainer, run = _train(monkeypatch, tmp_path, data, epochs=4,
                             losses=lambda n: bad if n == 8 else 1.0)
    assert run.log.status == "diverged" and "at step 8 (epoch 3)" in run.log.message
    assert len(trainer.calls) == 8 and [e.epoch for e in run.log.epochs] == [1, 2]
    _, meta = load_params(tmp_path / translate.CHECKPOINT)
    assert (meta["epoch"], meta["step"]) == (2, 6)
    assert run.log.message.endswith(f"last good checkpoint: {tmp_path / translate.CHECKPOINT}")


def test_interrupt_keeps_the_last_good_epoch(monkeypatch, tmp_path, data):
    def losses(n):
        if n == 5:
            raise KeyboardInterrupt
        return 1.0
    _, _, run = _train(monkeypatch, tmp_path, data, epochs=3, losses=losses)
    assert run.log.status == "interrupted" and run.log.message.startswith("interrupted at step 4")
    assert load_params(tmp_path / translate.CHECKPOINT)[1]["epoch"] == 1
    assert math.isfinite(run.log.wall_seconds)
