"""`rnnbench explain`: every rung is the built-in's function, op counts fall along the ladder,
the hand-written backward is autodiff's, the report's numbers come from the records, the CLI
refuses bad values in one line."""
import functools
import re
import subprocess
import sys

import numpy as np
import pytest

from bench.explain import runner as explain, report as explain_report
from bench.explain.worker import batch, max_error
from bench.parity.tolerances import allclose
from common.config import LMConfig
from common.errors import NotSupported
from common.params import init_lm_params
from common.registry import get_module
from common.rungs import ExplainConfig, fuse_lstm, gap_closed, split_lstm
from conftest import ROOT, backend_or_skip
from test_self_contained import ISSUE_NUMBER

V, H, B, T = 28, 7, 3, 6
CASES = [(fw, rung) for fw, rungs in explain.FRAMEWORK_RUNGS.items() for rung in rungs]


def rungs_of(framework):
    backend_or_skip(framework)
    return get_module(framework, "rungs")


@functools.lru_cache(maxsize=None)
def case(dtype):
    cfg = LMConfig("lstm", "scratch", V, H)
    params = init_lm_params(cfg, seed=3, dtype="float64", init="uniform")
    ids, targets = batch(ExplainConfig(), 5, B, T)
    return cfg, params, ids, targets


@functools.lru_cache(maxsize=None)
def builtin_result(framework, dtype):
    R = rungs_of(framework)
    cfg, params, ids, targets = case(dtype)
    return R.loss_and_grads(R.build("builtin", cfg, params, dtype, steps=T), ids, targets)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework,rung", CASES, ids=[f"{f}-{r}" for f, r in CASES])
def test_rung_matches_builtin_forward_and_gradients(framework, rung, dtype):
    R = rungs_of(framework)
    cfg, params, ids, targets = case(dtype)
    got = R.loss_and_grads(R.build(rung, cfg, params, dtype, steps=T), ids, targets)
    want = builtin_result(framework, dtype)
    assert set(got[2]) == set(params), f"{framework}/{rung}/{dtype}: canonical gradient names"
    assert got[1].shape == (B, T, V)
    error = max_error(got, want)
    assert error <= allclose("explain rungs", dtype)["atol"], \
        f"{framework}/{rung}/{dtype}: max error {error:.2e}"
    # and not trivially: the gradients are there
    assert max(np.abs(g).max() for g in got[2].values()) > 1e-3


@pytest.mark.parametrize("framework", list(explain.FRAMEWORK_RUNGS))
def test_ladder_names_match_each_framework(framework):
    assert rungs_of(framework).RUNGS == explain.FRAMEWORK_RUNGS[framework]


@pytest.mark.parametrize("framework", list(explain.FRAMEWORK_RUNGS))
def test_rungs_refuse_other_models(framework):
    R = rungs_of(framework)
    cfg = LMConfig("gru", "scratch", V, H)
    with pytest.raises(NotSupported):
        R.build("d2l", cfg, init_lm_params(cfg), "float32")


def op_counts(framework):
    R = rungs_of(framework)
    cfg, params, ids, targets = case("float32")
    counts = {}
    for rung in R.RUNGS:
        model = R.build(rung, cfg, params, "float32", steps=T)
        step = R.make_step(model, ids, targets, 1.0, 1.0)
        R.sync(model)(step())
        counts[rung], source = R.count_ops(model, step)
        assert source
    return counts


@pytest.mark.parametrize("framework", list(explain.FRAMEWORK_RUNGS))
def test_op_counts_fall_along_the_ladder(framework):
    counts = op_counts(framework)
    assert min(counts.values()) > 0, counts
    # fusing the gates removes 6 of the 8 matmuls per step; hoisting removes one more
    assert counts["d2l"] > counts["fused"] > counts["hoisted"], counts
    if framework == "jax":  # HLO kernels: the hand backward drops the in-loop weight gradient
        assert counts["hand_vjp"] < counts["compiled"], counts
    else:  # the fused kernel: the head, loss and update's ops, and one call per layer
        assert 3 * counts["builtin"] < counts["hoisted"], counts
    if framework == "mxnet":  # one graph: the imperative loop's ops, minus the Python glue
        assert counts["compiled"] <= counts["hoisted"], counts


def test_torch_packed_rung_says_which_products_it_ran():
    """The packed rung runs oneDNN's inner product where oneDNN packs (float32 on a CPU) and
    says so; in float64 it runs the plain products and its code path says that instead."""
    R = rungs_of("torch")
    import torch
    cfg, params, *_ = case("float32")
    f32, f64 = (R.build("packed", cfg, params, d) for d in ("float32", "float64"))
    if torch.backends.mkldnn.is_available():
        assert "oneDNN" in f32.code_path and "plain products" not in f32.code_path
    assert "plain products" in f64.code_path


def test_torch_packed_products_are_the_plain_ones():
    """oneDNN's packed inner products and torch's matmul give the same layer, forward and
    backward, at a size where the blocked layout has partial blocks (float32 rounding apart)."""
    import torch
    from torch_impl.recurrence import hand_lstm, packable
    gen = torch.Generator().manual_seed(0)
    T_, B_, H_ = 5, 3, 37
    XP = torch.randn(T_, B_, 4 * H_, generator=gen, requires_grad=True)
    W = (0.2 * torch.randn(H_, 4 * H_, generator=gen)).requires_grad_()
    H0, C0 = torch.randn(B_, H_, generator=gen), torch.randn(B_, H_, generator=gen)
    if not packable(W):
        pytest.skip("torch was built without oneDNN: no packed products to compare")
    results = []
    for packed in (False, True):
        XP.grad = W.grad = None
        Y, h, c = hand_lstm(XP, W, H0, C0, packed)
        (Y.square().sum() + h.sum() + 2 * c.sum()).backward()
        results.append([Y.detach(), c.detach(), XP.grad.clone(), W.grad.clone()])
    for plain, packed in zip(*results):
        torch.testing.assert_close(packed, plain, **allclose("packed sequences", "float32"))


def test_fused_layout_round_trips():
    cfg, params, *_ = case("float64")
    fused = fuse_lstm(params)
    assert fused["W_x"].shape == (V, 4 * H) and fused["W_h"].shape == (H, 4 * H)
    back = split_lstm(fused)
    assert set(back) == set(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)


def test_gap_closed():
    assert gap_closed(10.0, 10.0, 2.0) == 0.0
    assert gap_closed(2.0, 10.0, 2.0) == 1.0
    assert gap_closed(6.0, 10.0, 2.0) == 0.5


# The hand-written backward against autodiff through the same scan.

def _autodiff_scan(split, reverse, W_h, q, XP, state0):
    import jax
    from common.backend import hidden_of as _hidden

    def body(state, xp):
        state = split.pointwise(q, xp, _hidden(state) @ W_h, state)
        return state, _hidden(state)
    final, Y = jax.lax.scan(body, state0, XP, reverse=reverse)
    return Y, final


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_custom_vjp_gradient_equals_autodiff(cell, reverse):
    backend_or_skip("jax")
    import jax
    from jax_impl.devices import enable_x64

    from jax_impl.cells import SPLITS
    from jax_impl.recurrence import scan_split
    split, G = SPLITS[cell], {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    rng = np.random.default_rng(0)
    with enable_x64(True):
        W_h = rng.normal(0, 0.5, (H, G * H))
        q = {"b_hn": rng.normal(size=H)} if cell == "gru" else {}
        XP = rng.normal(size=(T, B, G * H))
        state0 = (rng.normal(size=(B, H)), rng.normal(size=(B, H))) if cell == "lstm" \
            else rng.normal(size=(B, H))
        cts = (rng.normal(size=(T, B, H)), jax.tree.map(lambda a: rng.normal(size=a.shape), state0))
        outs, grads = [], []
        for fn in (functools.partial(scan_split, split, reverse),
                   functools.partial(_autodiff_scan, split, reverse)):
            out, pullback = jax.vjp(fn, W_h, q, XP, state0)
            outs.append(out)
            grads.append(pullback(cts))
        for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
            np.testing.assert_allclose(a, b, **allclose("same operations"))
        for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
            np.testing.assert_allclose(a, b, **allclose("same function"))


# The report: every figure read from the records.

def fake_records(scale=1.0):
    """Two frameworks at one size with distinctive numbers."""
    rows = []
    spec = {"torch": [("d2l", 0.5, 70.0), ("fused", 0.3, 38.0), ("hoisted", 0.2, 34.0),
                      ("compiled", 0.125, 34.0), ("builtin", 0.1, 1.4)],
            "mxnet": [("d2l", 0.8, 66.0), ("onednn", 0.4, 37.0), ("compiled", 0.16, 31.0),
                      ("builtin", 0.128, 1.7)],
            "jax": [("d2l", 1.6, 108.0), ("hand_vjp", 0.14, 21.6), ("builtin", 0.2, 53.3)]}
    for fw, rungs in spec.items():
        recs = [explain.RungRecord(fw, r, explain.RUNG_INFO[r].label, 256, 32, 35, 28, "float32",
                                   "cpu", 2, 2, median_s=s / scale, spread=0.05, min_s=s / scale,
                                   repeats=5, compile_s=0.25, tokens_per_s=1120 * scale / s,
                                   ops_per_step=ops, ops_source="fake counter",
                                   parity_error=3e-7, parity64_error=4e-17, device_name="cpu0")
                for r, s, ops in rungs]
        explain.fill_gaps(recs)
        rows += [explain.asdict(r) for r in recs]
    return rows


CONFIG = explain.asdict_config(ExplainConfig(hidden_sizes=(256,)))


def test_markdown_numbers_come_from_the_records():
    recs = fake_records()
    text = explain_report.markdown(CONFIG, recs)
    # MXNet: d2l 1,400 tok/s, built-in 8,750 tok/s (6.2x), 66.0 vs 1.7 ops per step
    for figure in ("8,750 tokens/s", "at 1,400:", "6.2x", "66.0 operators", "built-in 1.7",
                   "fake counter", "3.0e-07", "4.0e-17"):
        assert figure in text, figure
    # the gap closed by the compiled rung: (0.8 - 0.16) / (0.8 - 0.128) = 95%
    assert "| 95% |" in text
    # JAX fast beats Flax (0.2/0.14 = 1.43) but is 0.71x the fastest built-in (torch 11,200)
    assert "JAX fast (lax.scan, hand backward) / Flax built-in = 1.43" in text
    assert "fastest built-in (torch) = 0.71" in text
    doubled = explain_report.markdown(CONFIG, fake_records(scale=2.0))
    assert "17,500 tokens/s" in doubled and "8,750 tokens/s" not in doubled


def test_markdown_calls_no_fast_path_scratch():
    """Only d2l's loop is "scratch" in the page: the rungs past it are hand-written fast paths."""
    text = explain_report.markdown(CONFIG, fake_records())
    for claim in ("JAX scratch", "scratch rung", "scratch-level"):
        assert claim not in text, claim
    assert not ISSUE_NUMBER.search(text)     # the page cites docs/, never a tracker


def test_markdown_has_no_hand_typed_figures():
    """Every number in the prose is a config value, a record value or derived from them:
    scaling every speed changes every speed figure and no other."""
    def figures(text):
        return re.findall(r"\d[\d,]*\.?\d*", text)
    one, two = (explain_report.markdown(CONFIG, fake_records(s)) for s in (1.0, 2.0))
    changed = [(a, b) for a, b in zip(figures(one), figures(two)) if a != b]
    assert len(figures(one)) == len(figures(two))
    for a, b in changed:
        a, b = float(a.replace(",", "")), float(b.replace(",", ""))
        assert b == pytest.approx(2 * a, rel=0.01), (a, b)


def test_plot_draws_each_rungs_speed_over_its_builtins(tmp_path, monkeypatch):
    import matplotlib.figure
    panels, real = [], matplotlib.figure.Figure.savefig

    def spy(fig, path, **kw):
        panels.extend((ax.get_title(), sorted(round(p.get_width(), 9) for p in ax.patches))
                      for ax in fig.axes)
        return real(fig, path, **kw)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    path = explain_report.plot(fake_records(), tmp_path / "explain.png")
    # tokens/s over the built-in's = built-in's step time over the rung's (fake_records)
    widths = {"torch": [0.1 / s for s in (0.5, 0.3, 0.2, 0.125, 0.1)],
              "mxnet": [0.128 / s for s in (0.8, 0.4, 0.16, 0.128)],
              "jax": [0.2 / s for s in (1.6, 0.14, 0.2)]}
    assert panels == [(explain_report.NAMES[fw], sorted(round(w, 9) for w in ws))
                      for fw, ws in widths.items()]
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (1650, 450)


def test_explain_end_to_end_on_torch(tmp_path):
    backend_or_skip("torch")
    cfg = ExplainConfig(hidden_sizes=(8,), frameworks=("torch",), rungs=("d2l", "builtin"),
                        threads=1, budget_s=0.05, min_repeats=2, warmup=0, parity64=True)
    assert explain.main(cfg, tmp_path, quiet=True) == 0
    data = explain.records.read_json(tmp_path / "explain.json")
    assert [r["rung"] for r in data["records"]] == ["d2l", "builtin"]
    rec = data["records"][1]
    assert rec["tokens_per_s"] == pytest.approx(rec["batch"] * rec["steps"] / rec["median_s"])
    assert rec["ops_per_step"] > 0 and rec["gap_closed"] == 1.0
    assert rec["threads"] == 1 and rec["parity64_error"] == 0.0 and rec["status"] == "ok"
    assert rec["device"] == "cpu" and rec["device_name"] == "cpu"
    text = (tmp_path / "why-gluon-is-faster.md").read_text()
    assert f"{rec['tokens_per_s']:,.0f}" in text
    assert (tmp_path / "explain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [floor] = data["floors"]
    assert (floor["framework"], floor["hidden"], floor["status"]) == ("torch", 8, "ok")
    assert floor["median_s"] > 0 and floor["repeats"] >= 2
    assert f"{1e3 * floor['median_s']:.1f} ms per step" in text


@pytest.mark.parametrize("argv,needle", [
    (["explain", "--threads", "0"], "positive int"),
    (["explain", "--hidden", "256", "-3"], "positive int"),
    (["explain", "--budget", "soon"], "positive float"),
    (["explain", "--warmup", "-1"], "integer >= 0"),
    (["explain", "--rungs", "turbo"], "invalid choice"),
    (["explain", "--frameworks", "tensorflow"], "invalid choice"),
    (["explain", "--device", "tpu"], "invalid choice"),
])
def test_cli_rejects_bad_values_in_one_line(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err



def test_a_device_the_framework_cannot_see_is_unavailable_not_an_error(tmp_path):
    """A worker asked for a GPU where its framework sees none records why, per rung."""
    backend_or_skip("torch")
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = ExplainConfig(hidden_sizes=(8,), frameworks=("torch",), rungs=("d2l", "builtin"),
                        devices=("gpu",), threads=1, budget_s=0.05, min_repeats=2, warmup=0)
    recs = explain.run_framework("torch", "gpu", cfg)
    assert [r.status for r in recs] == ["unavailable", "unavailable"]
    assert all("GPU" in r.error for r in recs)
    text = explain_report.summary_table([explain.asdict(r) for r in recs])
    assert "unavailable" in text


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
@pytest.mark.parametrize("framework", list(explain.FRAMEWORK_RUNGS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_step_runs_the_steps_products(framework, dtype, cell, gates):
    """The floor's step returns the weight gradient and the input projection among its products,
    at the shapes of the step it stands for (the cell's gate width)."""
    R = rungs_of(framework)
    step, sync, kernels = R.products_step(LMConfig(cell, "scratch", V, H), B, T, dtype)
    out = step()
    sync(out)
    shapes = {tuple(np.shape(a)) for a in out}
    G = gates * H
    assert {(H, G), (G, H)} & shapes, shapes      # dW_h, in either layout
    assert (T * B, G) in shapes and (T * B, V) in shapes, shapes
    assert kernels


def fake_floors(scale=1.0, torch_s=0.11, mxnet_s=0.2, jax_s=0.09):
    return [{"framework": fw, "hidden": 256, "device": "cpu", "kernels": f"{fw} kernels",
             "median_s": s / scale, "spread": 0.02, "repeats": 5, "status": "ok", "error": None}
            for fw, s in (("torch", torch_s), ("mxnet", mxnet_s), ("jax", jax_s))]


def test_floors_say_how_much_room_the_bar_leaves():
    recs = fake_records()
    text = explain_report.markdown(CONFIG, recs, fake_floors())
    lines = {line.split(": ")[1]: line for line in text.splitlines()
             if line.startswith("- H=256, cpu: ") and "products alone" in line}
    # torch: built-in 0.1 s, products 0.11 s: 1.25x allows 125.0 ms, leaving 15.0 ms
    # 3 x 2*T*B*(V*4H + H*4H + H*V) = 3 * 2 * 1120 * (28*1024 + 256*1024 + 256*28) flops
    gflops = 3 * 2 * 1120 * (28 * 1024 + 256 * 1024 + 256 * 28) / 0.11 / 1e9
    assert f"110.0 ms per step ({gflops:.0f} GFLOP/s), 1.10x the built-in's whole step of " \
           "100.0 ms" in lines["PyTorch"]
    assert "leaves 15.0 ms" in lines["PyTorch"]
    # MXNet: built-in 0.128 s, products 0.2 s > 160.0 ms: the bar cannot be met
    assert "would be 160.0 ms: no hand-written rung" in lines["MXNet Gluon"]
    # JAX against the fastest built-in (torch, 0.1 s): 0.8x allows 125.0 ms, products 90.0 ms
    assert "the fastest built-in's (torch) whole step of 100.0 ms" in lines["JAX"]
    assert "leaves 35.0 ms" in lines["JAX"]
    assert "products not measured" in explain_report.floors_text(
        recs, [{**fake_floors()[0], "status": "error", "median_s": None, "error": "boom"}])
    assert "floor under the hand-written rungs" not in explain_report.markdown(CONFIG, recs)


def test_floor_figures_come_from_the_records():
    def figures(text):
        return re.findall(r"\d[\d,]*\.?\d*", text)
    one = explain_report.floors_text(fake_records(1.0), fake_floors(1.0))
    two = explain_report.floors_text(fake_records(2.0), fake_floors(2.0))
    assert len(figures(one)) == len(figures(two))
    for a, b in zip(figures(one), figures(two)):
        if a != b:
            a, b = float(a.replace(",", "")), float(b.replace(",", ""))
            # times halve, rates (GFLOP/s) double
            assert b == pytest.approx(a / 2, rel=0.02) or b == pytest.approx(2 * a, rel=0.02), \
                (a, b)
