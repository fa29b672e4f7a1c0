"""fastbook's training loop (`bench.fastbook.runner`) over a stub `ladder` trainer: the loss and accuracy
arithmetic per epoch, the batches each step gets, and the record `run_model` writes.
"""
import numpy as np
import pytest

from bench.fastbook import runner as bench_ladder
from common import ladder as L
from stub_backends import NAME, install


class ScriptedTrainer:
    """Step n (1-based) returns loss `0.5 * n`; evaluate returns the batch's loss sum, correct
    count and positions (every position of `y`) from `y` itself, so the sums are known."""

    code_path = "stub ladder"

    def __init__(self):
        self.steps, self.evals = [], []

    def step(self, x, y, state=None):
        self.steps.append((x.copy(), y.copy(), state))
        return 0.5 * len(self.steps), f"after-step-{len(self.steps)}"

    def evaluate(self, x, y, state=None):
        self.evals.append((x.copy(), y.copy(), state))
        return float(y.sum()), int((y % 2 == 0).sum()), int(y.size), "after-eval"


def _data(every_step: bool):
    """12 training and 8 validation samples in batches of 4, each filled with its row id."""
    rows = lambda start, n, width: np.repeat(np.arange(start, start + n)[:, None], width, axis=1)
    y = (lambda start, n: rows(start, n, 16)) if every_step else (lambda s, n: np.arange(s, s + n))
    width = 16 if every_step else 3
    return L.LadderData(rows(0, 12, width), y(0, 12), rows(12, 8, width), y(12, 8), 4, every_step)


@pytest.mark.parametrize("model", [2, 4], ids=["three-tokens", "every-step"])
def test_epoch_losses_and_accuracy_are_the_sums_over_every_position(model):
    spec, data = L.get_spec(model), _data(L.get_spec(model).every_step)
    trainer = ScriptedTrainer()
    history = bench_ladder.fit(trainer, spec, data, epochs=2)
    assert [h.train_loss for h in history] == [1.0, 2.5]            # mean of 0.5, 1, 1.5 ...
    positions = data.valid_y.size                                    # 8 or 8 * 16
    assert history[0].valid_loss == pytest.approx(data.valid_y.sum() / positions, rel=1e-12)
    assert history[0].accuracy == (data.valid_y % 2 == 0).sum() / positions == 0.5
    np.testing.assert_array_equal(np.concatenate([y for _, y, _ in trainer.steps[:3]]),
                                  data.train_y)                     # in order, fastbook's loader


def test_run_model_records_the_last_epochs_accuracy_and_schedule(monkeypatch):
    trainer, made = ScriptedTrainer(), []

    def make_trainer(spec, params, sched, device, seed, dtype):
        made.append((spec.id, sched.total_steps, device, seed, dtype, sorted(params)))
        return trainer
    install(monkeypatch, "ladder", type("Ladder", (), {"make_trainer": staticmethod(make_trainer)}))
    nums = np.random.default_rng(0).integers(0, 30, 4 * 64 * 3 * 5 + 5)
    ids = L.HumanNumbersIds([f"w{i}" for i in range(30)], nums)
    record = bench_ladder.run_model(NAME, L.get_spec(3), ids, epochs=2, seed=7, device="gpu:1",
                                    progress=False, dtype="float64")
    data = L.ladder_data(L.get_spec(3), nums)
    assert made == [(3, 2 * data.steps_per_epoch, "gpu:1", 7, "float64",
                     sorted(L.init_params(L.get_spec(3), 30)))]
    assert len(trainer.steps) == record.steps == 2 * data.steps_per_epoch
    assert record.accuracy == record.history[-1].accuracy and len(record.history) == 2
    assert record.baseline_accuracy == L.most_common_target(data)[1]
    assert (record.backend, record.device, record.dtype, record.code_path) == (
        NAME, "gpu:1", "float64", "stub ladder")
