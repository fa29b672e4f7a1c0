"""The GRU encoder-decoder: shapes and init, masking, teacher forcing, greedy
decoding, BLEU, every framework x impl against the NumPy reference, gradients and trainers
across frameworks, the parity section, checkpoints across frameworks, the `translate` verb.

Every model here has the parity harness's sizes (bench/parity/seq2seq.py), so JAX compiles each
(impl, variant, dtype) once for the whole file.
"""
import math

import numpy as np
import pytest

import reference as ref
from bench.parity import seq2seq as s2p
from bench.parity.harness import Case
from bench.parity.tolerances import allclose, tolerance
from common import metrics
from common.registry import get_module
from common.seq2seq import (Seq2SeqConfig, init_seq2seq_params, label_mask, seq2seq_param_shapes,
                            truncate_at_eos)
from conftest import backend_or_skip, shared_data_dir

BACKENDS = ["torch", "mxnet", "jax"]
MODELS = [("scratch", "reset_after"), ("builtin", "reset_after"), ("scratch", "reset_before")]
MODEL_IDS = ["scratch", "builtin", "scratch_before"]
PAD, BOS, EOS, STEPS = s2p.PAD, s2p.BOS, s2p.EOS, s2p.SIZES["greedy_steps"]


def module(backend):
    backend_or_skip(backend)
    return get_module(backend, "seq2seq")


def inputs(variant="reset_after", dtype="float64"):
    """The parity harness's parameters and batch (labels padded past their valid lengths)."""
    case = Case("gru", variant, s2p.SIZES["L"], False, dtype)
    return s2p.config(case, "scratch"), s2p.case_inputs(case)


def build(backend, impl, variant="reset_after", dtype="float64", params=None):
    cfg, data = inputs(variant, dtype)
    cfg = Seq2SeqConfig(impl, cfg.src_vocab_size, cfg.tgt_vocab_size, cfg.embed_size,
                        cfg.hidden_size, cfg.num_layers, variant)
    mod = module(backend)
    return mod, mod.build_seq2seq(cfg, data["params"] if params is None else params, dtype), data


def batch(data):
    return data["src"], data["dec_in"], data["label"], data["label_valid_len"]


# ---------------------------------------------------------------- shapes and initialisation

def test_canonical_shapes_follow_the_contract():
    cfg = Seq2SeqConfig("scratch", 11, 13, embed_size=5, hidden_size=7, num_layers=2)
    shapes = seq2seq_param_shapes(cfg)
    assert shapes["encoder.embedding"] == (11, 5) and shapes["decoder.embedding"] == (13, 5)
    assert shapes["encoder.l0.W_xz"] == (5, 7) and shapes["encoder.l1.W_xz"] == (7, 7)
    assert shapes["decoder.l0.W_xh"] == (5 + 7, 7) and shapes["decoder.l1.W_hr"] == (7, 7)
    assert shapes["decoder.l0.b_hn"] == (7,)
    assert shapes["decoder.W_hq"] == (7, 13) and shapes["decoder.b_q"] == (13,)
    assert len(shapes) == 2 + 2 * 2 * 10 + 2


def test_xavier_init_is_d2ls_and_seeded():
    cfg = Seq2SeqConfig("scratch", 50, 60, embed_size=32, hidden_size=64, num_layers=2)
    params = init_seq2seq_params(cfg, seed=3, dtype="float64")
    again = init_seq2seq_params(cfg, seed=3, dtype="float64")
    assert all(np.array_equal(params[k], again[k]) for k in params)
    # torch's xavier_uniform_ on the stacked (3H, in) GRU matrix: bound sqrt(6 / (in + 3H))
    for key, fan_in in (("decoder.l0.W_xz", 32 + 64), ("encoder.l1.W_hh", 64)):
        bound = math.sqrt(6 / (fan_in + 3 * 64))
        assert bound * 0.95 < np.abs(params[key]).max() <= bound
    bound = math.sqrt(6 / (64 + 60))
    assert bound * 0.95 < np.abs(params["decoder.W_hq"]).max() <= bound
    assert abs(params["encoder.embedding"].std() - 1) < 0.1   # nn.Embedding's N(0, 1)


# ---------------------------------------------------------------- loss, masking, teacher forcing

def test_masked_loss_is_the_mean_over_non_padding_tokens():
    torch = pytest.importorskip("torch")
    cfg, data = inputs()
    logits = ref.seq2seq_forward(cfg, data["params"], data["src"], data["dec_in"])
    ours = ref.masked_cross_entropy(logits, data["label"], data["label_valid_len"])
    # padded labels are <pad>, so torch's ignore_index computes d2l's masked mean independently
    theirs = torch.nn.functional.cross_entropy(torch.tensor(logits).reshape(-1, logits.shape[-1]),
                                               torch.tensor(data["label"]).reshape(-1),
                                               ignore_index=PAD)
    assert ours == pytest.approx(theirs.item(), rel=1e-12)
    np.testing.assert_array_equal(label_mask([3, 1], 4), [[1, 1, 1, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_contributes_nothing_to_loss_or_gradients(backend):
    """Other ids under the padded labels and at padded decoder steps: the same loss, gradients."""
    mod, model, data = build(backend, "builtin")
    src, dec_in, label, valid = batch(data)
    padded = np.arange(label.shape[1])[None, :] >= valid[:, None]
    rng = np.random.default_rng(1)
    label2, dec_in2 = label.copy(), dec_in.copy()
    label2[padded] = rng.integers(4, 13, padded.sum())
    dec_in2[padded] = rng.integers(4, 13, padded.sum())   # dec_in[t] only feeds logits >= t
    loss, grads = mod.loss_grads(model, src, dec_in, label, valid)
    loss2, grads2 = mod.loss_grads(model, src, dec_in2, label2, valid)
    assert loss2 == pytest.approx(loss, abs=allclose("same operations")["atol"])
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], **allclose("same operations"), err_msg=k)


def test_data_layer_shifts_targets_for_teacher_forcing():
    from common.corpora import BOS as BOS_TOKEN, load_fra_eng
    data = load_fra_eng(_fra_path(), num_steps=6, num_train=32, num_val=8)
    bos = data.tgt_vocab[BOS_TOKEN]
    assert (data.dec_in[:, 0] == bos).all()
    np.testing.assert_array_equal(data.dec_in[:, 1:], data.label[:, :-1])
    pad = data.tgt_vocab["<pad>"]
    np.testing.assert_array_equal(data.label_valid_len, (data.label != pad).sum(axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_logits_never_see_later_inputs(backend):
    """Teacher forcing is causal: logits at step t depend on dec_in[:, :t+1] only."""
    mod, model, data = build(backend, "scratch")
    later = data["dec_in"].copy()
    later[:, 3:] = (later[:, 3:] + 5) % 13
    a, b = mod.forward(model, data["src"], data["dec_in"]), mod.forward(model, data["src"], later)
    np.testing.assert_allclose(a[:, :3], b[:, :3], **allclose("same operations"))
    assert np.abs(a[:, 3:] - b[:, 3:]).max() > 1e-3


# ---------------------------------------------------------------- greedy decoding and BLEU

def test_truncate_at_eos_cuts_each_row_at_its_first_eos():
    ids, lengths = truncate_at_eos([[5, 3, 6, 3], [3, 5, 5, 5], [5, 6, 7, 8]], eos=3)
    np.testing.assert_array_equal(lengths, [1, 0, 4])
    np.testing.assert_array_equal(ids, [[5, 3, 3, 3], [3, 3, 3, 3], [5, 6, 7, 8]])


@pytest.mark.parametrize("impl,variant", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_equals_reference_and_stops_at_eos(backend, impl, variant):
    mod, model, data = build(backend, impl, variant)
    cfg, _ = inputs(variant)
    raw = ref.seq2seq_greedy(cfg, data["params"], data["src"], BOS, EOS, STEPS)
    want_ids, want_lengths = truncate_at_eos(raw, EOS)
    assert len(set(want_lengths)) > 1 and want_lengths.min() < STEPS   # rows stop apart
    ids, lengths = mod.greedy(model, data["src"], BOS, EOS, STEPS)
    np.testing.assert_array_equal(lengths, want_lengths)
    np.testing.assert_array_equal(ids, want_ids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_stops_every_row_at_once_when_eos_wins(backend):
    cfg, data = inputs()
    params = dict(data["params"], **{"decoder.b_q": np.where(np.arange(13) == EOS, 50.0, 0.0)})
    mod, model, _ = build(backend, "scratch", params=params)
    ids, lengths = mod.greedy(model, data["src"], BOS, EOS, STEPS)
    assert ids.shape == (3, STEPS) and (lengths == 0).all() and (ids == EOS).all()


@pytest.mark.parametrize("pred,label,expected,published", [
    ("il est <unk> .", "il est calme .", (3 / 4) ** 0.5 * (1 / 3) ** 0.25, 0.658),
    ("je suis <unk> .", "je suis chez moi .",
     math.exp(1 - 5 / 4) * (3 / 4) ** 0.5 * (1 / 3) ** 0.25, 0.512),
    ("j'ai perdu !", "j'ai perdu .", (2 / 3) ** 0.5 * (1 / 2) ** 0.25, 0.687),
], ids=["mxnet-hes-calm", "jax-im-home", "jax-i-lost"])
def test_bleu_reproduces_d2ls_published_scores(pred, label, expected, published):
    """d2l 1.0 prints 0.658, 0.512, 0.687 (docs/anchors.md): one wrong word gives each of them."""
    assert metrics.bleu(pred, label, 2) == pytest.approx(expected, rel=1e-12)
    assert round(metrics.bleu(pred, label, 2), 3) == published


# ---------------------------------------------------------------- against the NumPy reference

REFERENCE_CASES = [(impl, "reset_after", dtype) for impl in ("scratch", "builtin")
                   for dtype in ("float64", "float32")] + [("scratch", "reset_before", "float64")]


@pytest.mark.parametrize("impl,variant,dtype", REFERENCE_CASES,
                         ids=["-".join(c) for c in REFERENCE_CASES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_and_masked_loss_match_reference(backend, impl, variant, dtype):
    mod, model, data = build(backend, impl, variant, dtype)
    cfg, _ = inputs(variant)
    params64 = {k: v.astype(np.float64) for k, v in data["params"].items()}
    want = ref.seq2seq_forward(cfg, params64, data["src"], data["dec_in"])
    logits = mod.forward(model, data["src"], data["dec_in"])
    assert logits.dtype == np.dtype(dtype) and logits.shape == (3, 5, 13)
    atol = tolerance(dtype, "outputs")[0]
    np.testing.assert_allclose(logits, want, rtol=0, atol=atol,
                               err_msg=f"{backend}/{impl} {variant} {dtype}")
    loss, _ = mod.loss_grads(model, *batch(data))
    assert loss == pytest.approx(ref.masked_cross_entropy(want, data["label"],
                                                          data["label_valid_len"]), abs=atol)


def test_reference_gradient_matches_finite_differences_of_torch_scratch():
    """Anchor the cross-framework gradient check: torch's autograd vs central differences."""
    cfg, data = inputs()
    mod, model, _ = build("torch", "scratch")
    _, grads = mod.loss_grads(model, *batch(data))
    params = {k: v.copy() for k, v in data["params"].items()}
    loss = lambda: ref.masked_cross_entropy(ref.seq2seq_forward(cfg, params, data["src"],
                                                                data["dec_in"]),
                                            data["label"], data["label_valid_len"])
    for key, idx in [("encoder.embedding", (4, 1)), ("encoder.l0.W_hr", (2, 3)),
                     ("decoder.l1.b_hn", (5,)), ("decoder.l0.W_xh", (9, 0)), ("decoder.b_q", (3,))]:
        old = params[key][idx]
        params[key][idx] = old + 1e-6
        up = loss()
        params[key][idx] = old - 1e-6
        down = loss()
        params[key][idx] = old
        assert grads[key][idx] == pytest.approx((up - down) / 2e-6, abs=1e-8), key


@pytest.fixture(scope="module")
def torch_scratch_grads():
    mod = module("torch")
    return {v: mod.loss_grads(build("torch", "scratch", v)[1], *batch(inputs(v)[1]))[1]
            for v in ("reset_after", "reset_before")}


@pytest.mark.parametrize("impl,variant", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_agree_across_frameworks_float64(backend, impl, variant, torch_scratch_grads):
    mod, model, data = build(backend, impl, variant)
    _, grads = mod.loss_grads(model, *batch(data))
    want = torch_scratch_grads[variant]
    assert sorted(grads) == sorted(want)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=0,
                                   atol=tolerance("float64", "grad_params")[0],
                                   err_msg=f"{backend}/{impl} {variant}: {k}")


# ---------------------------------------------------------------- trainers

def _two_steps(backend, impl, dropout=0.0, seed=0):
    mod, model, data = build(backend, impl)
    trainer = mod.make_trainer(model, lr=0.01, clip=0.5, dropout=dropout, seed=seed)
    losses = [trainer.step(*batch(data))[0] for _ in range(2)]
    return losses, trainer.params()


@pytest.fixture(scope="module")
def torch_two_steps():
    return _two_steps("torch", "scratch")


@pytest.mark.parametrize("backend,impl", [("torch", "builtin"), ("jax", "scratch"),
                                          ("jax", "builtin")], ids=lambda x: x)
def test_adam_steps_with_clipping_agree_across_frameworks(backend, impl, torch_two_steps):
    """Same parameters after two clipped Adam steps (torch's and optax's Adam are the same)."""
    losses, params = _two_steps(backend, impl)
    np.testing.assert_allclose(losses, torch_two_steps[0], **allclose("same function"))
    for k, v in torch_two_steps[1].items():
        np.testing.assert_allclose(params[k], v, **allclose("same function"), err_msg=k)


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_mxnet_adam_step_is_gluons_adam_on_the_clipped_torch_gradient(impl, torch_scratch_grads):
    """Gluon's Adam folds its epsilon into the step (mxnet_impl/trainer.py): a first step moves
    each parameter by lr * g / (|g| + eps / sqrt(1 - beta2)), g the clipped gradient."""
    grads = torch_scratch_grads["reset_after"]
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    scale = min(1.0, 0.5 / norm)
    mod, model, data = build("mxnet", impl)
    trainer = mod.make_trainer(model, lr=0.01, clip=0.5, dropout=0.0)
    trainer.step(*batch(data))
    params = trainer.params()
    for k, g in grads.items():
        g = g * scale
        want = data["params"][k] - 0.01 * g / (np.abs(g) + 1e-8 / math.sqrt(1 - 0.999))
        # MXNet hands lr, beta2 and eps to its kernel as float32: ~1e-8 here
        np.testing.assert_allclose(params[k], want, **allclose("float32 optimizer constants"),
                                   err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_active_while_training_and_seeded(backend):
    mod, model, data = build(backend, "scratch")
    quiet = mod.loss_grads(model, *batch(data))[0]

    def first_loss(seed):
        mod, model, data = build(backend, "scratch")
        return mod.make_trainer(model, lr=0.01, dropout=0.5, seed=seed).step(*batch(data))[0]

    first, again, other = first_loss(1), first_loss(1), first_loss(2)
    assert first == again and first != other and first != quiet


@pytest.fixture(scope="module")
def torch_two_dropout_steps():
    return _two_steps("torch", "scratch", dropout=0.3, seed=5)


@pytest.mark.parametrize("backend,impl", [("torch", "builtin"), ("jax", "scratch"),
                                          ("jax", "builtin")], ids=lambda x: x)
def test_dropout_drops_the_same_units_in_every_framework(backend, impl, torch_two_dropout_steps):
    """The masks come from NumPy (common.seq2seq.DropoutDraws), so training with dropout is the
    same experiment in every framework: same losses and parameters after two steps."""
    losses, params = _two_steps(backend, impl, dropout=0.3, seed=5)
    np.testing.assert_allclose(losses, torch_two_dropout_steps[0], **allclose("same function"))
    for k, v in torch_two_dropout_steps[1].items():
        np.testing.assert_allclose(params[k], v, **allclose("same function"), err_msg=k)


@pytest.mark.parametrize("impl", ["scratch", "builtin"])
def test_mxnet_dropout_loss_equals_torchs(impl, torch_two_dropout_steps):
    """MXNet's Adam differs in its epsilon (see above), so compare the first step's loss only."""
    losses, _ = _two_steps("mxnet", impl, dropout=0.3, seed=5)
    np.testing.assert_allclose(losses[0], torch_two_dropout_steps[0][0],
                               **allclose("same function"))


def test_dropout_scales_are_zero_or_inverse_keep_and_seeded():
    from common.seq2seq import Seq2SeqConfig, dropout_scales
    cfg = Seq2SeqConfig("scratch", src_vocab_size=5, tgt_vocab_size=6, embed_size=3,
                        hidden_size=4, num_layers=3)
    d = dropout_scales(cfg, (2, 7), (2, 5), 0.2, seed=1, step=3)
    assert sorted(d) == ["decoder.l1", "decoder.l2", "encoder.l1", "encoder.l2"]
    assert d["encoder.l1"].shape == (7, 2, 4) and d["decoder.l2"].shape == (5, 2, 4)
    assert set(np.unique(np.concatenate([v.ravel() for v in d.values()]))) <= {0.0, 1.25}
    again = dropout_scales(cfg, (2, 7), (2, 5), 0.2, seed=1, step=3)
    other = dropout_scales(cfg, (2, 7), (2, 5), 0.2, seed=1, step=4)
    assert all((again[k] == v).all() for k, v in d.items())
    assert any((other[k] != v).any() for k, v in d.items())
    assert dropout_scales(cfg, (2, 7), (2, 5), 0.0, seed=1, step=3) == {}


# ---------------------------------------------------------------- the parity section

def test_parity_section_passes_and_catches_swapped_gates(monkeypatch):
    backend_or_skip("torch")
    case = Case("gru", "reset_after", 2, False, "float64")
    records = s2p.case_records(case, ["torch"], "cpu")
    assert [r.status for r in records] == ["PASS"] and records[0].max_abs < 1e-12
    assert {"outputs", "grad_params"} == set(records[0].errors)
    convert = pytest.importorskip("torch_impl.convert")
    monkeypatch.setitem(convert.NATIVE_GATES, "gru", ("z", "r", "h"))
    assert [r.status for r in s2p.case_records(case, ["torch"], "cpu")] == ["FAIL"]


def test_parity_section_reports_reset_before_builtins():
    backend_or_skip("torch")
    records = s2p.case_records(Case("gru", "reset_before", 2, False, "float64"), ["torch"], "cpu")
    assert [r.status for r in records] == ["NOT SUPPORTED", "DIFFERENT FUNCTION"]
    assert records[1].errors["outputs"]["max_abs"] > 1e-3


# ---------------------------------------------------------------- checkpoints and the verb

def _fra_path():
    path = shared_data_dir() / "fra-eng"
    if not (path / "fra.txt").is_file():
        pytest.skip(f"no fra.txt under {path} (set RNNBENCH_DATA)")
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A torch model trained for 2 epochs on 32 pairs, with its checkpoint and data."""
    backend_or_skip("torch")
    from bench.translate import runner as translate
    from common.corpora import load_fra_eng
    from common.seq2seq import TranslateConfig
    tcfg = TranslateConfig(lr=0.01, epochs=2, batch_size=16, num_steps=6, num_train=32,
                           num_val=8, dtype="float64")
    data = load_fra_eng(_fra_path(), tcfg.num_steps, tcfg.num_train, tcfg.num_val)
    cfg = Seq2SeqConfig("builtin", len(data.src_vocab), len(data.tgt_vocab), 8, 8, 2)
    run = translate.train("torch", cfg, tcfg, data, tmp_path_factory.mktemp("tiny"), progress=False)
    assert run.log.status == "finished" and len(run.log.step_losses) == 4
    return run


@pytest.mark.parametrize("backend,impl", [("mxnet", "builtin"), ("jax", "scratch")],
                         ids=["mxnet-builtin", "jax-scratch"])
def test_checkpoint_translates_the_same_in_another_framework(tiny_checkpoint, backend, impl):
    backend_or_skip(backend)   # the current stack has no MXNet
    from bench.translate import runner as translate
    run = tiny_checkpoint
    mod, model, src_vocab, tgt_vocab, meta = translate.load_checkpoint(run.log.checkpoint,
                                                                        backend, impl)
    assert meta["epoch"] == 2 and src_vocab.idx_to_token == run.data.src_vocab.idx_to_token
    saved = model.canonical_params()
    for k, v in run.trainer.params().items():
        np.testing.assert_array_equal(saved[k], v, err_msg=k)
    sentences = ["go .", "i lost ."]
    theirs = translate.translate(mod, model, src_vocab, tgt_vocab, sentences, 6)
    ours = translate.translate(run.mod, run.model, src_vocab, tgt_vocab, sentences, 6)
    assert [t.translation for t in theirs] == [t.translation for t in ours]


def test_translate_verb_reports_unknown_words(tiny_checkpoint, capsys):
    from bench.cli.main import main
    assert main(["translate", "--checkpoint", tiny_checkpoint.log.checkpoint, "--backend", "jax",
                 "--sentences", "go zorglub ."]) == 0
    out = capsys.readouterr().out
    assert out.startswith("go zorglub . => ") and "read as <unk>: zorglub" in out


@pytest.mark.parametrize("argv,needle", [
    (["--sentences", " "], "is empty"),
    (["--file", "EMPTY"], "has no sentences"),
    (["--checkpoint", "/no/such/checkpoint.npz"], "/no/such/checkpoint.npz"),
    (["--checkpoint", "NOT_SEQ2SEQ"], "not a translation checkpoint"),
], ids=["empty-sentence", "empty-file", "missing-checkpoint", "lm-checkpoint"])
def test_translate_verb_errors_are_one_line(argv, needle, tmp_path, capsys):
    from bench.cli.main import main
    from common.params import save_params
    (tmp_path / "empty.txt").write_text("\n  \n")
    save_params(tmp_path / "lm.npz", {"W_hq": np.zeros((2, 2))}, {"model": {}})
    argv = [{"EMPTY": str(tmp_path / "empty.txt"),
             "NOT_SEQ2SEQ": str(tmp_path / "lm.npz")}.get(a, a) for a in argv]
    assert main(["translate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
