"""fastbook ch. 12's ladder, framework-neutral: the data as fastbook builds it, the models'
settings and canonical parameters, the one-cycle reference, AR/TAR, the loop's state resets,
the report and the `ladder` verb. (The corpus files' format is in test_corpora.py.)"""
import dataclasses
import math

import numpy as np
import pytest

from bench.cli.main import main as cli_main
from bench.fastbook import runner as bench_ladder
from bench.fastbook import report as ladder_report
from common import ladder as L

FASTBOOK_VOCAB = ("one . two three four five six seven eight nine ten eleven twelve thirteen "
                  "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty "
                  "sixty seventy eighty ninety hundred thousand").split()


@pytest.fixture(scope="module")
def ids():
    return L.load_ids()


# ---------------------------------------------------------------- data as fastbook prints it

def test_vocab_is_fastbooks_thirty_tokens_in_first_seen_order(ids):
    assert ids.vocab == FASTBOOK_VOCAB


def test_nums_start_as_fastbook_prints_them(ids):
    assert (len(ids.nums), ids.nums.dtype) == (63095, np.int64)
    assert ids.nums[:10].tolist() == [0, 1, 2, 1, 3, 1, 4, 1, 5, 1]
    assert " ".join(ids.vocab[i] for i in ids.nums[-7:]) == ". nine thousand nine hundred ninety nine"


def test_three_token_samples_as_fastbook(ids):
    X, y = L.three_token_samples(ids.nums)
    assert X.shape == (21031, 3) and y.shape == (21031,)
    # fastbook: [(tensor([0, 1, 2]), 1),(tensor([1, 3, 1]), 4),(tensor([4, 1, 5]), 1), ...]
    assert X[:3].tolist() == [[0, 1, 2], [1, 3, 1], [4, 1, 5]] and y[:3].tolist() == [1, 4, 1]


def test_windows_as_fastbook(ids):
    X, Y = L.window_samples(ids.nums)
    assert X.shape == Y.shape == (3943, 16)
    assert [ids.vocab[i] for i in X[0, :5]] == ["one", ".", "two", ".", "three"]
    np.testing.assert_array_equal(X[:, 1:], Y[:, :-1])
    np.testing.assert_array_equal(X[1:, 0], Y[:-1, -1])  # windows tile the corpus


@pytest.mark.parametrize("model, train, valid, steps, valid_batches", [
    (1, 16824, 4207, 262, 66),      # no group_chunks; train drops its partial last batch
    (3, 16768, 4160, 262, 65),      # group_chunks keeps (N // 64) * 64
    (4, 3136, 768, 49, 12),         # 3,943 windows: 3,154 / 789 before group_chunks
], ids=["three-tokens", "three-chunked", "windows"])
def test_split_sizes_and_batches(ids, model, train, valid, steps, valid_batches):
    data = L.ladder_data(L.get_spec(model), ids.nums)
    assert (len(data.train_x), len(data.valid_x), data.steps_per_epoch) == (train, valid, steps)
    assert sum(1 for _ in data.valid_batches()) == valid_batches
    assert all(len(x) == 64 for x, _ in data.train_batches())


def test_models_1_2_keep_fastbooks_order_without_shuffling(ids):
    data = L.ladder_data(L.get_spec(1), ids.nums)
    X, _ = L.three_token_samples(ids.nums)
    first = next(data.train_batches())[0]
    np.testing.assert_array_equal(first, X[:64])


@pytest.mark.parametrize("model, width", [(3, 3), (4, 16)], ids=["three-chunked", "windows"])
def test_group_chunks_rows_continue_across_batches(ids, model, width):
    data = L.ladder_data(L.get_spec(model), ids.nums)
    (x0, _), (x1, _) = list(data.train_batches())[:2]
    m = data.steps_per_epoch          # row j of batch i is sample i + m * j (fastbook)
    for j in (0, 17, 63):             # sample k starts at token width * k
        start = width * m * j
        assert x0[j].tolist() == ids.nums[start:start + width].tolist()
        assert x1[j].tolist() == ids.nums[start + width:start + 2 * width].tolist()


def test_most_common_target_is_thousand(ids):
    data = L.ladder_data(L.get_spec(1), ids.nums)
    token, fraction = L.most_common_target(data)
    assert (ids.vocab[token], fraction) == (L.BASELINE_TOKEN, L.BASELINE_ACCURACY)


# ---------------------------------------------------------------- settings and parameters

@pytest.mark.parametrize("model, epochs, lr, figure", [
    (1, 4, 1e-3, 0.494), (2, 4, 1e-3, 0.470), (3, 10, 3e-3, 0.589), (4, 15, 3e-3, 0.640),
    (5, 15, 3e-3, 0.488), (6, 15, 1e-2, 0.759), (7, 15, 1e-2, 0.869),
], ids=[f"LMModel{i}" for i in range(1, 8)])
def test_settings_follow_anchors(model, epochs, lr, figure):
    spec = L.get_spec(model)
    assert (spec.epochs, spec.lr_max, spec.fastbook_accuracy) == (epochs, lr, figure)


def test_model7_is_the_regularized_text_learner():
    spec = L.get_spec(7)
    assert (spec.dropout, spec.alpha, spec.beta, spec.wd, spec.tied) == (0.4, 2.0, 1.0, 0.1, True)
    assert spec.moms == (0.8, 0.7, 0.8)  # TextLearner's moms, not Learner's (0.95, 0.85, 0.95)


@pytest.mark.parametrize("model, keys", [
    (1, {"embedding", "W_hh", "b_h", "W_hq", "b_q"}),
    (4, {"embedding", "W_hh", "b_h", "W_hq", "b_q"}),
    (5, {"embedding", "l0.W_xh", "l0.W_hh", "l0.b_h", "l1.W_xh", "l1.W_hh", "l1.b_h", "W_hq", "b_q"}),
    (7, {"embedding", "b_q"} | {f"l{k}.{w}{g}" for k in (0, 1) for g in "ifoc"
                                for w in ("W_x", "W_h", "b_")}),
], ids=["LMModel1", "LMModel4", "LMModel5", "LMModel7-tied"])
def test_canonical_keys_and_shapes(model, keys):
    params = L.init_params(L.get_spec(model), 30, hidden=8, seed=1)
    assert set(params) == keys
    assert params["embedding"].shape == (30, 8) and params["b_q"].shape == (30,)
    assert all(v.dtype == np.float32 for v in params.values())


def test_init_is_seeded_and_torch_like():
    spec = L.get_spec(6)
    a, b = L.init_params(spec, 30, seed=3), L.init_params(spec, 30, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W_hq"], L.init_params(spec, 30, seed=4)["W_hq"])
    assert abs(a["embedding"].std() - 1) < 0.1                # nn.Embedding: N(0, 1)
    assert np.abs(a["l0.W_xi"]).max() <= 1 / 8                 # U(±1/sqrt(64))


def test_builtin_bias_is_the_sum_of_torchs_two_draws():
    """nn.LSTM's bias_ih + bias_hh, each U(±1/8): a triangular law with variance 2 / (3 * 64)."""
    spec = L.get_spec(6)
    params = L.init_params(spec, 30, seed=0)
    keys = L.doubled_bias_keys(spec)
    assert keys == tuple(f"l{k}.b_{g}" for k in (0, 1) for g in "ifoc")
    bias = np.concatenate([params[k] for k in keys])                 # 512 values
    assert 1 / 8 < np.abs(bias).max() <= 2 / 8
    assert bias.std() == pytest.approx(np.sqrt(2 / 3) / 8, rel=0.1)
    assert L.doubled_bias_keys(L.get_spec(4)) == ()                  # nn.Linear: one bias


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match=r"\[1, 2, 3, 4, 5, 6, 7\]"):
        L.get_spec(8)


# ---------------------------------------------------------------- one-cycle reference

def fastai_combined_cos(pct, start, middle, end):
    """fastai's `combined_cos`, transcribed from fastai/callback/schedule.py (float64)."""
    def sched_cos(a, b, pos):
        return a + (1 + math.cos(math.pi * (1 - pos))) * (b - a) / 2
    def inner(pos):
        if pos >= pct:
            return sched_cos(middle, end, (pos - pct) / (1 - pct))
        return sched_cos(start, middle, pos / pct)
    return inner


@pytest.mark.parametrize("total", [8, 37, 735], ids=lambda n: f"N{n}")
def test_one_cycle_reference_is_fastais_formula(total):
    sched = L.OneCycle(3e-3, total)
    lr = fastai_combined_cos(0.25, 3e-3 / 25, 3e-3, 3e-3 / 1e5)
    mom = fastai_combined_cos(0.25, 0.95, 0.85, 0.95)
    np.testing.assert_allclose(sched.lrs(), [lr(i / total) for i in range(total)], rtol=1e-12)
    np.testing.assert_allclose(sched.momentums(), [mom(i / total) for i in range(total)],
                               rtol=1e-12)


def test_one_cycle_landmarks():
    sched = L.OneCycle(1e-2, 100)
    lrs, moms = sched.lrs(), sched.momentums()
    assert lrs[0] == pytest.approx(4e-4) and lrs[25] == pytest.approx(1e-2)
    assert moms[0] == pytest.approx(0.95) and moms[25] == pytest.approx(0.85)
    assert lrs.argmax() == 25 and moms.argmin() == 25
    assert 1e-7 < lrs[-1] < 1e-5   # (N-1)/N of the way to lr_max / 1e5


# ---------------------------------------------------------------- AR / TAR reference

def test_ar_tar_reference_by_hand():
    raw = np.array([[[1.0, 2.0]], [[3.0, 2.0]], [[3.0, 5.0]]])    # (T=3, B=1, H=2)
    out = np.array([[[0.0, 4.0]], [[6.0, 0.0]], [[0.0, 0.0]]])
    ar = (16 + 36) / 6                                            # mean(out ** 2)
    tar = (4 + 0 + 0 + 9) / 4                                     # mean of squared steps
    assert L.ar_tar(raw, out, 2.0, 1.0) == pytest.approx(2 * ar + tar)


# ---------------------------------------------------------------- dropout masks

def test_dropout_masks_are_seeded_per_step_and_drop_the_rate():
    spec = L.get_spec(7)
    keep = L.dropout_keep(spec, (64, 16), 64, seed=0, step=3)
    assert keep.shape == (16, 64, 64) and keep.dtype == np.float32
    assert set(np.unique(keep)) == {0.0, 1.0}
    assert 1 - keep.mean() == pytest.approx(spec.dropout, abs=0.01)
    np.testing.assert_array_equal(keep, L.dropout_keep(spec, (64, 16), 64, seed=0, step=3))
    assert not np.array_equal(keep, L.dropout_keep(spec, (64, 16), 64, seed=0, step=4))
    assert not np.array_equal(keep, L.dropout_keep(spec, (64, 16), 64, seed=1, step=3))
    assert L.dropout_keep(L.get_spec(6), (64, 16), 64, seed=0, step=3) is None


def test_float64_masks_and_params_are_the_float32_draws():
    """`--dtype float64` trains on the same draws: the same mask, and parameters that round to
    the float32 ones."""
    spec = L.get_spec(7)
    keep = L.dropout_keep(spec, (64, 16), 64, seed=0, step=3, dtype="float64")
    assert keep.dtype == np.float64
    np.testing.assert_array_equal(keep, L.dropout_keep(spec, (64, 16), 64, seed=0, step=3))
    p64, p32 = L.init_params(spec, 30, dtype="float64"), L.init_params(spec, 30)
    assert {a.dtype for a in p64.values()} == {np.dtype(np.float64)}
    for key in p32:
        np.testing.assert_array_equal(p64[key].astype(np.float32), p32[key])


# ---------------------------------------------------------------- the loop

class RecordingTrainer:
    """Stands in for a backend trainer: records the state each call received."""

    def __init__(self):
        self.step_states, self.eval_states = [], []
        self.count = 0

    def step(self, x, y, state=None):
        self.step_states.append(state)
        self.count += 1
        return 1.0, f"after-step-{self.count}"

    def evaluate(self, x, y, state=None):
        self.eval_states.append(state)
        return float(y.size), int(y.size) // 2, int(y.size), f"after-eval-{len(self.eval_states)}"


def _tiny_data():
    x = np.zeros((12, 3), np.int64)
    return L.LadderData(x, np.zeros(12, np.int64), x[:8], np.zeros(8, np.int64), 4, True)


@pytest.mark.parametrize("model, stateful", [(2, False), (3, True)], ids=["stateless", "stateful"])
def test_state_resets_at_each_epoch_and_validation_start(model, stateful):
    trainer = RecordingTrainer()
    history = bench_ladder.fit(trainer, L.get_spec(model), _tiny_data(), epochs=2)
    expected = [None, "after-step-1", "after-step-2", None, "after-step-4", "after-step-5"]
    assert trainer.step_states == (expected if stateful else [None] * 6)
    assert trainer.eval_states == ([None, "after-eval-1", None, "after-eval-3"] if stateful
                                   else [None] * 4)
    assert [h.accuracy for h in history] == [0.5, 0.5] and history[0].valid_loss == 1.0


# ---------------------------------------------------------------- report and verb

def _record(model, backend, accuracy, **extra):
    spec = L.get_spec(model)
    return {"model": model, "backend": backend, "accuracy": accuracy, "epochs": spec.epochs,
            "fastbook_accuracy": spec.fastbook_accuracy, **extra}


def test_markdown_table_shows_fastbook_points_spread_and_baseline():
    recs = [_record(1, "torch", 0.503), _record(1, "jax", 0.49), _record(7, "torch", 0.85)]
    table = ladder_report.markdown_table(recs)
    assert table.splitlines()[0] == ("### fastbook ch. 12 on Human Numbers: final validation "
                                     "accuracy (float32)")   # records from before --dtype
    assert "| model | fastbook | torch | jax | spread (points) |" in table
    assert "| 0.494 | 0.503 (+0.9) | 0.490 (-0.4) | 1.3 |" in table
    assert "| 0.869 | 0.850 (-1.9) | — | — |" in table
    assert "always 'thousand'" in table and "0.152" in table


def test_markdown_title_names_the_dtype():
    recs = [_record(1, "torch", 0.5, dtype="float64"), _record(1, "jax", 0.5, dtype="float64")]
    assert "final validation accuracy (float64)" in ladder_report.markdown_table(recs)
    mixed = recs + [_record(2, "torch", 0.47, dtype="float32")]
    assert "(float64, float32)" in ladder_report.title(mixed)


def test_ladder_record_without_dtype_loads_as_float32():
    """ladder.json written before `--dtype` has no `dtype`: it ran in float32."""
    rec = bench_ladder.LadderRecord(1, "LMModel1", "torch", "cpu", 0, 4, 1e-3, 0.01, 1048, 0.5,
                                    0.494, 0.15, 1.0, "loop")
    old = dataclasses.asdict(rec)
    del old["dtype"]
    assert bench_ladder.LadderRecord(**old).dtype == "float32"


def test_plot_ladder_writes_png(tmp_path):
    recs = [_record(1, "torch", 0.5), _record(2, "mxnet", 0.47)]
    path = ladder_report.plot_ladder(recs, tmp_path / "ladder.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000


def test_ladder_verb_rejects_unknown_model(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["ladder", "--models", "9"])
    assert exc.value.code == 2 and "invalid choice: 9" in capsys.readouterr().err


def test_ladder_verb_rejects_unknown_dtype(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["ladder", "--dtype", "float16"])
    assert exc.value.code == 2 and "invalid choice: 'float16'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [None, "float64"], ids=["default", "float64"])
def test_ladder_verb_runs_and_writes_records(tmp_path, capsys, dtype):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    assert cli_main(["ladder", "--backends", "torch", "--models", "4", "--epochs", "1",
                     "--out", str(out), "--quiet"] + (["--dtype", dtype] if dtype else [])) == 0
    printed = capsys.readouterr().out
    assert "| LMModel4: 16-token windows" in printed and "| 0.640 |" in printed
    assert f"final validation accuracy ({dtype or 'float32'})" in printed
    saved = bench_ladder.records.read_json(out / "ladder.json")
    rec = saved["records"][0]
    assert saved["dtype"] == rec["dtype"] == (dtype or "float32")
    assert (rec["backend"], rec["model"], rec["epochs"], rec["steps"]) == ("torch", 4, 1, 49)
    assert 0.15 < rec["accuracy"] < 1 and rec["code_path"]
    assert (out / "ladder.md").is_file() and (out / "ladder.png").is_file()
