"""`rnnbench exercises`: the measurement logic of every experiment, on tiny data and fake models
(what is measured and how, not what training reaches)."""
import math

import numpy as np
import pytest

from bench.exercises import runner as E
from bench.exercises import lm as L
from bench.exercises import report as R
from bench.exercises import sine as S
from bench.exercises import text as X
from bench.exercises import train as TR
from bench.lm.data import LMData
from common.vocab import Vocab

V = 5


class Window:
    """A fake LM backend: the logits at t are a fixed function of the last `w` input ids
    (a bag of ids, weighted by recency); the state carries the last w-1 ids across calls."""

    def __init__(self, w=3):
        self.w = w

    def lm_forward(self, model, ids, state):
        B, T = ids.shape
        hist = np.zeros((B, 0), np.int64) if state is None else state[0]
        full = np.concatenate([hist, ids], axis=1)
        logits = np.zeros((B, T, V))
        for t in range(T):
            end = hist.shape[1] + t + 1
            for j, back in enumerate(range(min(self.w, end))):
                logits[np.arange(B), t, full[:, end - 1 - back]] += 0.5 ** j
        return logits, [full[:, -(self.w - 1):] if self.w > 1 else full[:, :0]]


class Uniform:
    def lm_forward(self, model, ids, state):
        return np.zeros((*ids.shape, V)), state


def test_registry_has_all_sixteen_and_only_checks_numbers():
    reg = E.registry()
    assert sorted(reg) == list(range(1, 17))
    assert all(ex.section and ex.question for ex in reg.values())
    assert E.parse_only(None, reg) == list(range(1, 17)) and E.parse_only([3, 3, 1], reg) == [1, 3]
    with pytest.raises(ValueError, match="no exercise 99"):
        E.parse_only([99], reg)


def test_run_one_records_errors_instead_of_raising():
    ex = E.Exercise(0, "s", "q", lambda ctx: (_ for _ in ()).throw(ValueError("boom")))
    res = E.run_one(ex, None)
    assert res.status == "error" and "boom" in res.answer


def test_split_and_rows():
    data = LMData("t", np.arange(100), Vocab(list("ab")), "char", "x")
    train, val = L.split(data, 0.1)
    assert len(train.ids) == 90 and list(val) == list(range(90, 100))
    rows = L.as_rows(np.arange(41), rows=2, window=4)
    assert rows.shape == (2, 21) and rows[1, 0] == 20
    with pytest.raises(ValueError, match="cannot fill"):
        L.as_rows(np.arange(5), rows=2, window=4)


def test_nll_uniform_is_log_v_and_skip_drops_targets():
    ids = np.array([1, 2, 0, 3, 4, 1, 0, 2, 3, 4, 1, 2, 3] * 4)
    nll, n = L.nll_per_token(Uniform(), None, ids, window=3, carry=True, rows=2)
    assert nll == pytest.approx(math.log(V)) and n == 2 * 24
    _, kept = L.nll_per_token(Uniform(), None, ids, window=3, carry=True, rows=2, skip=0)
    assert kept < n


def test_nll_carried_differs_from_reset_only_when_history_matters():
    ids = np.random.default_rng(0).integers(0, V, 200)
    a = L.nll_per_token(Window(3), None, ids, 4, carry=True)[0]
    b = L.nll_per_token(Window(3), None, ids, 4, carry=False)[0]
    c = L.nll_per_token(Window(1), None, ids, 4, carry=True)[0]
    d = L.nll_per_token(Window(1), None, ids, 4, carry=False)[0]
    assert a != b and c == d


def test_perturbed_batch_changes_exactly_one_token_k_back():
    ids = np.random.default_rng(1).integers(1, V, 50)
    ks = [1, 2, 8]
    batch = L.perturbed_batch(ids, [3, 10], 9, ks, V, np.random.default_rng(0))
    assert batch.shape == (2 * 4, 9)
    for s in range(2):
        orig = batch[s * 4]
        for j, k in enumerate(ks):
            diff = np.flatnonzero(batch[s * 4 + 1 + j] != orig)
            assert list(diff) == [9 - k] and batch[s * 4 + 1 + j, 9 - k] != 0


def test_kl_zero_for_equal_and_positive_otherwise():
    p = np.array([[1.0, 2.0, 3.0]])
    assert L.kl(p, p)[0] == 0
    q = np.array([[3.0, 2.0, 1.0]])
    lp = p - np.log(np.exp(p).sum())
    lq = q - np.log(np.exp(q).sum())
    assert L.kl(p, q)[0] == pytest.approx(float((np.exp(lp) * (lp - lq)).sum()))


def test_kl_by_distance_sees_exactly_the_models_window():
    ids = np.random.default_rng(2).integers(1, V, 300)
    div = L.kl_by_distance(Window(3), None, ids, [1, 2, 3, 4, 8], 6, V)
    assert all(div[k] > 0 for k in (1, 2, 3)) and div[4] == 0 and div[8] == 0
    reset = L.kl_by_distance(Window(8), None, ids, [1, 2, 4, 8], 6, V, window=2)
    assert reset[1] > 0 and reset[2] > 0 and reset[4] == 0 and reset[8] == 0
    assert X.farthest([{"KL@1": 1.0, "KL@2": 0.0}], [1, 2]) == 1


def test_diversity_measures():
    assert L.distinct_ngrams("abcabc", 3) == pytest.approx(3 / 4)
    assert L.distinct_ngrams("abcd", 2) == 1.0
    assert L.longest_repeat("abcXabcY") == 3 and L.longest_repeat("abcd") == 0


def test_sample_nll_scores_only_after_the_prefix():
    assert L.sample_nll(Uniform(), None, [1, 2, 3, 4], 2) == pytest.approx(math.log(V))


def test_train_lm_stops_at_a_non_finite_loss(monkeypatch):
    class Trainer:
        calls = 0
        def step(self, X, Y, state):
            Trainer.calls += 1
            return (float("nan") if Trainer.calls == 3 else 1.0), state
        def params(self):
            return {"w": np.zeros(1)}
    class Be:
        def build_lm(self, cfg, params, dtype, device):
            return "model"
        def make_trainer(self, model, opt, lr, clip):
            return Trainer()
        def lm_loss_grads(self, model, X, Y, state):
            return 0.0, {"a": np.array([3.0]), "b": np.array([4.0])}, state
    monkeypatch.setattr(L, "get_backend", lambda name: Be())
    monkeypatch.setattr(L, "init_lm_params", lambda *a: {})
    from common.config import LMConfig, TrainConfig
    data = LMData("t", np.arange(2000) % 7, Vocab(list("abcdef")), "char", "x")
    run = L.train_lm("fake", LMConfig("rnn", "scratch", 7, 4),
                     TrainConfig(epochs=3, batch_size=2, num_steps=4), data, grad_every=2)
    assert run.status == "diverged" and len(run.step_losses) == 3
    assert run.grad_norms == [(0, 5.0), (2, 5.0)]


def test_clipping_answer_counts_from_rows():
    row = lambda clip, status, rose, norm: {"lr": 1, "clip": clip, "status": status,
                                            "rose_above_start": rose, "max_grad_norm": norm}
    rows = [row("off", "diverged", True, 50.0), row("off", "finished", False, 9.0),
            row(1.0, "finished", False, 7.0)]
    text = TR.clipping_answer(rows, "x")
    assert "1 of 2 runs reached a non-finite loss" in text and "with clipping at 1 0 of 1" in text
    assert "50" in text and "7" in text
    assert TR.best_so_far([3, 5, 2, 4]) == [3, 3, 2, 2]


def test_one_hot_model_equals_its_embedding_twin_in_torch():
    pytest.importorskip("torch")
    assert X.one_hot_vs_embedding("torch", "scratch", "float64") == 0.0
    from common.config import LMConfig
    twin, p = X.embedding_twin(LMConfig("rnn", "scratch", 6, 3), {"l0.W_xh": np.ones((6, 3))})
    assert twin.embed_size == 3 and p["embedding"].shape == (6, 3)
    assert (p["l0.W_xh"] == np.eye(3)).all()


def test_books_unk_and_word_oov():
    vocab = Vocab(list("ab "))
    ids, raw, changed, unk = X.book_ids("Ab, c", vocab, -1)
    assert raw == 5 and changed == 2 and unk == 1        # "A" and "," are not a-z or space
    assert X.word_oov_rate("the cat sat", "the cat") == pytest.approx(1 / 3)


def test_compressors_report_bits_per_char():
    bpc = X.compressed_bits_per_char("abc " * 500)
    assert set(bpc) == {"gzip -9", "bzip2 -9", "xz -9e"} and all(0 < v < 1 for v in bpc.values())


def test_sine_mlp_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    p, Xb, y = S.mlp_init(1), rng.normal(size=(7, S.TAU)), rng.normal(size=7)
    loss = lambda q: float(((S.mlp_forward(q, Xb)[:, 0] - y) ** 2).mean())
    g = S.mlp_grads(p, Xb, y)
    q = {k: v.copy() for k, v in p.items()}
    q["W1"][1, 2] += 1e-6
    assert (loss(q) - loss(p)) / 1e-6 == pytest.approx(g["W1"][1, 2], rel=1e-4, abs=1e-8)


def test_sine_rollout_and_k_step_error():
    x = S.noisy_sine(0)
    assert x.shape == (S.T_SERIES,) and np.allclose(x, S.noisy_sine(0))
    feats, labels = S.lagged(np.arange(10.0), 4)
    assert feats[0].tolist() == [0, 1, 2, 3] and labels[0] == 4
    p = S.mlp_init(0)
    preds = S.mlp_rollout(p, x, [600, 700], 3)
    assert preds.shape == (3, 2)
    assert preds[0, 1] == pytest.approx(S.mlp_forward(p, x[None, 696:700])[0, 0])
    oracle = lambda origins, kmax: np.stack([x[origins + k] for k in range(kmax)])
    assert all(v == 0 for v in S.k_step_mse(oracle, x).values())


def test_sine_rnn_first_step_prediction_reads_the_hidden_path():
    pytest.importorskip("torch")
    x = S.noisy_sine(0)[:700]
    m = S.RNNRegressor("torch", "scratch", 4)
    preds = m.rollout(x, np.array([600, 650]), 2)
    H = m.hidden_path(x)
    assert preds[0] == pytest.approx(m.predict(H[[599, 649]]), abs=1e-6)
    loss, grads, head = m.grads(*S.windows(x, 8, 3, np.random.default_rng(0)))
    assert loss > 0 and set(grads) == set(m.params) and head["w"].shape == (4, 1)


def test_report_table_and_markdown(tmp_path):
    assert R.fmt(1234) == "1,234" and R.fmt(0.5) == "0.5" and R.fmt(1e-5) == "1.00e-05"
    assert R.table([{"a": 1, "b": 2.5}]).splitlines()[2] == "| 1 | 2.5 |"
    ex = E.Exercise(3, "sec", "question?", None)
    res = E.Result([{"framework": "torch", "x": 1.5}], "answer 1.5", status="ok")
    R.write_record(tmp_path, ex, res, E.QUICK, ("torch",))
    md = R.write_markdown(tmp_path, {3: ex}, {3: res}, E.QUICK, ("torch",), 1.0).read_text()
    assert "QUICK" in md and "## 3. sec" in md and "--only 3 --quick --backends torch" in md
    assert (tmp_path / "ex03.json").is_file()


def test_cli_rejects_unknown_exercise(capsys):
    from bench.cli.main import main
    assert main(["exercises", "--quick", "--only", "42", "--out", "/nonexistent/x"]) == 2
    assert "no exercise 42" in capsys.readouterr().err


def test_relu_vs_tanh_reads_the_largest_lr_without_clipping():
    row = lambda lr, clip, bad: {"lr": lr, "clip": clip, "status": "finished",
                                 "rose_above_start": bad}
    relu = [row(1, "off", True), row(10, "off", True), row(10, "off", False), row(10, 1.0, True)]
    tanh = [row(1, "off", True), row(10, "off", False), row(10, "off", False), row(10, 1.0, True)]
    text = TR.relu_vs_tanh(relu, tanh)
    assert ("lr 10, the ReLU RNN went wrong in 1 of 2 runs, more often than the tanh RNN "
            "(0 of 2)") in text


def test_markdown_keeps_earlier_records_of_the_same_sizes(tmp_path):
    ex = {n: E.Exercise(n, f"sec {n}", "q", None) for n in (1, 2)}
    R.write_record(tmp_path, ex[1], E.Result([], "old one", seconds=2.0), E.QUICK, ("torch",))
    R.write_record(tmp_path, ex[2], E.Result([], "full two"), E.FULL, ("torch",))
    kept = R.earlier_results(tmp_path, ex, E.QUICK)
    assert list(kept) == [1] and kept[1].answer == "old one" and kept[1].seconds == 2.0


GUTENBERG = "header\n*** START OF THE BOOK ***\n{}\n*** END OF THE BOOK ***\nlicence\n"


def test_every_exercise_runs_end_to_end_on_tiny_data(tmp_path):
    """The plumbing of all sixteen on a made-up corpus, torch only, tiny sizes (not the
    outcomes): each ends ok (or not supported, said why), with rows or an answer, and writes
    its record and plots."""
    pytest.importorskip("torch")
    from dataclasses import replace
    text = "the time traveller sat in his chair and looked at us all " * 60
    (tmp_path / "timemachine.txt").write_text(text)
    (tmp_path / "war_of_the_worlds.txt").write_text(GUTENBERG.format("No one would have " * 80))
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\nBefore we proceed.\n" * 60)
    tiny = replace(E.QUICK, name="quick", max_tokens=3000, hidden=4, num_steps=4, batch_size=4,
                   epochs=1, seeds=(0,), kmax=8, num_sequences=2, sample_len=10, trials=1,
                   other_tokens=400, sine_steps=3)
    ctx = E.Context(tiny, ("torch",), tmp_path / "out", tmp_path, progress=False)
    ctx.out.mkdir()
    reg = E.registry()
    for n, ex in reg.items():
        if n == 10:
            continue            # runs the parity harness over every backend; tested apart
        res = E.run_one(ex, ctx)
        assert res.status in ("ok", "not supported"), (n, res.answer)
        assert res.answer and all((ctx.out / p).is_file() for p in res.plots)
        R.write_record(ctx.out, ex, res, tiny, ctx.backends)
    assert len(list(ctx.out.glob("ex*.json"))) == 15
