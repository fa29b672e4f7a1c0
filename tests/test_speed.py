"""The speed harness and its report: correctness only, nothing here is a timing to trust."""
import json
import subprocess
import sys

import pytest

from bench.jobs import main_job as mainjob
from bench.report import run_report as report
from bench.speed import runner as speed, records as rec, worker
from bench.speed.grid import SpeedPlan, named_sizes, product_sizes, quick_plan, sweep_axis
from common.flops import case_flops, gemm_bound_seconds, step_flops, step_matmuls
from common.speedcase import Budget, SpeedCase, SpeedGrid, Step, speed_data
from conftest import ROOT

TINY = dict(hidden=8, batch=2, steps=3, vocab=5, threads=1)


def tiny_case(backend="torch", impl="builtin", cell="lstm", mode="train", **kw):
    return SpeedCase(backend, impl, cell, mode, **{**TINY, **kw})


class FakeClock:
    """A clock that only the fake step moves: `fn` takes 1 s, the work `sync` waits for 0.5 s."""

    def __init__(self):
        self.now, self.events = 0.0, []

    def __call__(self):
        self.events.append("clock")
        return self.now


class FakeModule:
    """A framework speed module whose step logs fn/sync and moves the fake clock."""

    GEMM_OPS = ("fake.matmul",)

    def __init__(self, clock, raises=None):
        self.clock, self.raises, self.built = clock, raises, []

    def versions(self):
        return {"fake": "1.0"}

    def threads_used(self):
        return {"fake_threads": 1}

    def gpu_names(self):
        return []

    def pin_threads(self, threads):
        pass

    def _step(self, path):
        def fn():
            self.clock.events.append("fn")
            self.clock.now += 1.0
            return "result"

        def sync(result):
            assert result == "result"
            self.clock.events.append("sync")
            self.clock.now += 0.5
        return Step(fn, sync, path)

    def build_step(self, case, ids, targets, seed=0):
        self.built.append(case.key)
        if self.raises:
            raise self.raises
        return self._step("fake path")

    def gemm_step(self, op, M, K, N, device="cpu", dtype="float32"):
        return self._step(op)


# Synchronisation inside every timed region.

def test_every_timed_region_ends_with_sync():
    clock = FakeClock()
    budget = Budget(warmup=2, min_repeats=4, seconds=0.0)
    record = worker.measure_case(FakeModule(clock), tiny_case(), budget, clock=clock)
    assert record.status == rec.OK
    # the median includes the 0.5 s that only sync waits for: sync is inside the region
    assert record.timing["median_s"] == pytest.approx(1.5)
    assert record.timing["repeats"] == 4
    segments = " ".join(clock.events).split("clock")
    for seg in segments:  # between two clock reads: whole (fn, sync) pairs, never a bare fn
        words = seg.split()
        assert words == ["fn", "sync"] * (len(words) // 2), clock.events
    assert segments.count(" fn sync ") == 1 + 4  # the first call, then the timed repeats


def test_hand_timed_loop_ends_with_sync():
    clock = FakeClock()
    step = FakeModule(clock)._step("fake")
    assert worker.hand_timed(step, 4, clock=clock) == pytest.approx((4 * 1.0 + 0.5) / 4)
    assert clock.events[-2:] == ["sync", "clock"]


def test_each_framework_step_names_its_barrier(monkeypatch):
    torch = pytest.importorskip("torch")
    from torch_impl import speed as torch_speed
    barrier, asked = object(), []
    monkeypatch.setattr(torch_speed, "make_sync", lambda device: asked.append(device) or barrier)
    step = torch_speed.build_step(tiny_case(), *speed_data(tiny_case()))
    assert step.sync is barrier and asked == [torch.device("cpu")]
    assert step.code_path.startswith("torch.nn.LSTM")


# FLOP counts.

def test_flops_match_hand_counts():
    # LSTM, I=3, H=2, V=3, B=1, T=1: input 2*1*3*8 + recurrence 2*1*2*8 + output 2*1*2*3
    assert step_flops("lstm", 3, 2, 3, 1, 1, "infer") == 48 + 32 + 12
    assert step_flops("lstm", 3, 2, 3, 1, 1, "train") == 3 * 92
    # RNN, I=V=5, H=4, B=2, T=3: 2*6*5*4 + 3*(2*2*4*4) + 2*6*4*5
    assert step_flops("rnn", 5, 4, 5, 2, 3, "infer") == 240 + 192 + 240
    # GRU has 3 gate blocks: 2*6*5*12 + 3*(2*2*4*12) + 2*6*4*5
    assert step_flops("gru", 5, 4, 5, 2, 3, "infer") == 720 + 576 + 240
    assert case_flops(tiny_case(cell="gru", mode="infer")) == step_flops("gru", 5, 8, 5, 2, 3,
                                                                         "infer")


def test_matmul_shapes_and_gemm_bound():
    shapes = [m.shape for m in step_matmuls("lstm", 28, 256, 28, 32, 35)]
    assert shapes == [(1120, 28, 1024), (32, 256, 1024), (1120, 256, 28)]
    case = tiny_case(mode="infer")
    # at 1 flop/s the bound is the flop count itself
    assert gemm_bound_seconds(case, lambda shape: 1.0) == pytest.approx(case_flops(case))


def test_fill_rates_against_gemm_table():
    case = tiny_case(mode="infer")
    square = 16
    gemms = [rec.GemmRecord("fake", "op", *m.shape, "cpu", 1, gflops_per_s=2.0)
             for m in step_matmuls("lstm", 5, 8, 5, 2, 3)]
    gemms.append(rec.GemmRecord("fake", "op", square, square, square, "cpu", 1, gflops_per_s=4.0))
    record = rec.StepRecord(case, rec.OK)
    worker.fill_rates(record, 1e-6, worker.GemmTable(gemms, square))
    assert record.tokens_per_s == pytest.approx(6e6)
    assert record.gflops_per_s == pytest.approx(case_flops(case) / 1e-6 / 1e9)
    assert record.fraction_of_gemm == pytest.approx(record.gflops_per_s / 4.0)
    assert record.fraction_of_shape_limit == pytest.approx(case_flops(case) / 2e9 / 1e-6)


# Records and resume.

def _examples():
    case = tiny_case()
    return [rec.StepRecord(case, rec.OK, code_path="x", timing={"median_s": 0.1},
                           tokens_per_s=60.0, flops=10, threads_used={"busy_threads": 1}),
            rec.StepRecord(tiny_case(cell="gru", gru_variant="reset_before"), rec.NOT_SUPPORTED,
                           note="only reset_after"),
            rec.GemmRecord("torch", "torch.matmul", 2, 3, 4, "cpu", 1, gflops_per_s=1.5),
            rec.BareLoopRecord(case, rec.OK, steps=5, rounds=3, bare_s=0.1, overhead=0.01),
            rec.EnvRecord("torch", {"torch": "2"}, [], 1, {"n": 1}, [0], "cpu", {})]


@pytest.mark.parametrize("index", range(5), ids=["step", "not-supported", "gemm", "bare", "env"])
def test_records_round_trip_through_json(index):
    record = _examples()[index]
    line = rec.to_json(record)
    assert "\n" not in line
    assert rec.from_dict(json.loads(line)) == record


def test_append_read_skips_torn_line_and_done_keys(tmp_path):
    path = tmp_path / rec.FILENAME
    ok, ns, *_ = _examples()
    err = rec.StepRecord(tiny_case(mode="infer"), rec.ERROR, note="boom")
    for r in (ok, ns, err):
        rec.append(path, r)
    with open(path, "a") as f:
        f.write('{"kind": "step", "case": {"backe')  # a writer killed mid-line
    assert [r.key for r in rec.read(path)] == [ok.key, ns.key, err.key]
    assert rec.done_keys(rec.read(path)) == {ok.key, ns.key}  # ERROR is retried


def test_worker_resumes_skipping_done_cases(tmp_path, monkeypatch):
    import common.registry
    clock = FakeClock()
    fake = FakeModule(clock)
    monkeypatch.setattr(common.registry, "get_module", lambda name, module: fake)
    cases = [tiny_case(impl=i, mode=m) for i in ("scratch", "builtin") for m in ("train", "infer")]
    out = tmp_path / rec.FILENAME
    rec.append(out, rec.StepRecord(cases[0], rec.OK))
    rec.append(out, rec.StepRecord(cases[1], rec.NOT_SUPPORTED, note="n/s"))
    rec.append(out, rec.StepRecord(cases[2], rec.ERROR, note="crashed before"))
    job = {"backend": "torch", "threads": 1, "out": str(out), "gemm": False,
           "cases": [c.to_dict() for c in cases], "seed": 0,
           "budget": {"warmup": 0, "min_repeats": 1, "seconds": 0.0, "max_repeats": 1}}
    assert worker.run(job) == 0
    assert fake.built == [cases[2].key, cases[3].key]
    latest = rec.latest(rec.read(out))
    assert all(latest[c.key].status in (rec.OK, rec.NOT_SUPPORTED) for c in cases)


# NotSupported and missing devices are recorded.

def test_not_supported_combination_is_recorded():
    pytest.importorskip("torch")
    from torch_impl import speed as torch_speed
    case = tiny_case(cell="gru", gru_variant="reset_before")
    record = worker.measure_case(torch_speed, case, Budget(0, 1, 0.0))
    assert record.status == rec.NOT_SUPPORTED and "reset_after" in record.note
    assert rec.from_dict(json.loads(rec.to_json(record))).status == rec.NOT_SUPPORTED


def test_missing_gpu_is_recorded_not_crashed():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from torch_impl import speed as torch_speed
    record = worker.measure_case(torch_speed, tiny_case(device="gpu"), Budget(0, 1, 0.0))
    assert record.status == rec.NO_DEVICE and "GPU" in record.note


def test_not_supported_shows_in_tables():
    from bench.speed import tables as speed_tables
    text = speed_tables.throughput_tables(_examples(), markdown=True)
    assert "n/s" in text
    assert any("only reset_after" in x for x in speed_tables.notes(_examples())["NOT SUPPORTED"])


# Grid and command line.

def test_grids():
    assert named_sizes("d2l") == ((256, 32, 35, 28), (1024, 32, 35, 28))
    assert len(named_sizes("full")) == 2 + 4 + 4 + 4 - 1  # H=1024 is in d2l and the H sweep
    assert product_sizes(hidden=[64, 128]) == ((64, 32, 35, 28), (128, 32, 35, 28))
    case = SpeedCase("jax", "scratch", "rnn", "train", 256, 32, 70, 28)
    assert sweep_axis(case) == ["steps"]
    assert sweep_axis(SpeedCase("jax", "scratch", "rnn", "train", 256, 32, 35, 28)) == \
        ["hidden", "steps", "batch"]
    plan = quick_plan(2)
    # backends x impls (scratch, fast, builtin) x cells x modes
    assert len(plan.grid.cases()) == 3 * 3 * 2 * 2 and plan.grid.sizes == ((256, 32, 35, 28),)
    assert [c.key for c in plan.bare_loop_cases()] == \
        ["torch/builtin/lstm/train/H256-B32-T35-V28/float32/cpu/t2"]


@pytest.mark.parametrize("argv,needle", [
    (["speed", "--threads", "0"], "positive integer"),
    (["speed", "--cells", "foo"], "invalid choice"),
    (["speed", "--budget", "-1"], "non-negative"),
    (["speed", "--device", "tpu"], "invalid choice"),
    (["speed", "--hidden", "x"], "positive integer"),
    (["speed", "--min-repeats", "5", "--max-repeats", "2", "--out", "/nonexistent/x"],
     "bad budget"),
    (["report", "/no/such/dir"], "/no/such/dir"),
])
def test_bad_speed_values_are_one_line(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, capture_output=True,
                          text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


# A real measurement, in a framework's own subprocess, then its report.

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("speed")
    grid = SpeedGrid(("torch",), ("builtin",), ("lstm",), ("train", "infer"), ((8, 2, 3, 5),),
                     threads=1)
    plan = SpeedPlan(grid, Budget(1, 2, 0.0), Budget(0, 2, 0.0), gemm_square=32, bare_loop=True)
    records = speed.run(plan, out, show_progress=False)
    return plan, out, records


def test_tiny_real_measurement_is_complete(tiny_run):
    plan, out, records = tiny_run
    steps = [r for r in records if r.kind == "step"]
    assert len(steps) == 2
    gemms = [r for r in records if r.kind == "gemm"]
    rates = {(g.M, g.K, g.N): g.gflops_per_s for g in gemms}
    for g in gemms:
        assert g.status == rec.OK and g.gflops_per_s == pytest.approx(
            2 * g.M * g.K * g.N / g.timing["median_s"] / 1e9)
    for r in steps:
        assert r.status == rec.OK, r.note
        assert r.timing["repeats"] >= 2 and r.timing["median_s"] > 0
        assert r.tokens_per_s == pytest.approx(6 / r.timing["median_s"])
        median = r.timing["median_s"]
        assert r.flops == case_flops(r.case)
        assert r.gflops_per_s == pytest.approx(r.flops / median / 1e9)
        assert r.gemm_gflops == rates[(32, 32, 32)]                  # the large square's rate
        assert r.fraction_of_gemm == pytest.approx(r.gflops_per_s / r.gemm_gflops)
        bound = gemm_bound_seconds(r.case, lambda shape: rates[shape] * 1e9)
        assert r.gemm_bound_s == pytest.approx(bound)
        assert r.fraction_of_shape_limit == pytest.approx(bound / median)
        assert "torch.nn.LSTM" in r.code_path and r.versions["torch"]
        assert r.threads_used["torch.get_num_threads"] == 1
        assert r.threads_used["busy_threads"] is None or r.threads_used["busy_threads"] >= 1
    env = [r for r in records if r.kind == "env"][0]
    assert env.env["OMP_NUM_THREADS"] == "1" and env.threads == 1
    # every product shape of the step (H=8, B=2, T=3, V=5, 4 gates) and the large square
    assert set(rates) == {(32, 32, 32), (6, 5, 32), (2, 8, 32), (6, 8, 5)}
    bare = [r for r in records if r.kind == "bare-loop"]
    assert len(bare) == 1 and bare[0].status == rec.OK and bare[0].rounds == 5
    b = bare[0]
    assert b.bare_s > 0 and b.loop_s > 0 and 5 <= b.steps <= 200
    assert b.overhead == pytest.approx(b.harness_mean_s / b.loop_s - 1)
    assert b.step_vs_bare == pytest.approx(b.loop_s / b.bare_s - 1)


def test_rerun_resumes_without_new_records(tiny_run):
    plan, out, records = tiny_run
    before = (out / rec.FILENAME).read_text()
    speed.run(plan, out, show_progress=False)
    assert (out / rec.FILENAME).read_text() == before


def test_report_from_real_run(tiny_run, capsys):
    plan, out, _ = tiny_run
    assert report.main(out) == 0
    text = (out / report.REPORT).read_text()
    assert "## Speed" in text and "torch/builtin" in text and "Harness overhead" in text
    assert (out / "speed-cpu-train.png").stat().st_size > 1000
    assert str(out / report.REPORT) in capsys.readouterr().out


def test_report_includes_explain_files_and_scaling(tmp_path):
    sub = tmp_path / "explain"
    sub.mkdir()
    (sub / "explain.json").write_text("{}")
    (sub / "why-gluon-is-faster.md").write_text("# Why\n\nbecause oneDNN")
    for H in (64, 128, 256):
        case = SpeedCase("torch", "builtin", "lstm", "train", H, 32, 35, 28)
        rec.append(tmp_path / rec.FILENAME, rec.StepRecord(
            case, rec.OK, timing={"median_s": 0.01, "iqr_over_median": 0.0, "repeats": 3,
                                  "compile_s": 0.0}, tokens_per_s=H * 100.0, gflops_per_s=1.0))
    text = report.build(tmp_path)
    assert "because oneDNN" in text and "explain/explain.json" in text
    assert (tmp_path / "scaling-hidden-cpu-train.png").exists()


def test_report_of_empty_directory_is_an_error(tmp_path):
    from common.errors import RnnbenchError
    with pytest.raises(RnnbenchError, match="no speed.jsonl"):
        report.build(tmp_path)


# The main job's explain step.

def test_main_job_calls_explain_when_present(tmp_path, monkeypatch):
    from bench.explain import runner as explain
    seen = []
    monkeypatch.setattr(explain, "main_quick", lambda out: seen.append(out) or 0)
    assert mainjob.run_explain(tmp_path) == 0 and seen == [tmp_path]


def test_fast_training_step_has_its_floor_beside_it(tmp_path):
    pytest.importorskip("torch")
    grid = SpeedGrid(("torch",), ("fast", "builtin"), ("gru",), ("train", "infer"),
                     ((8, 2, 3, 5),), threads=1)
    plan = SpeedPlan(grid, Budget(1, 2, 0.0), Budget(0, 2, 0.0), gemm=False)
    records = speed.run(plan, tmp_path, show_progress=False)
    floors = [r for r in records if r.kind == "floor"]
    assert [(f.case.impl, f.case.mode) for f in floors] == [("fast", "train")]
    f = floors[0]
    assert f.status == rec.OK and f.timing["median_s"] > 0 and f.kernels
    assert f.key == "floor/" + f.case.key
    before = (tmp_path / rec.FILENAME).read_text()
    speed.run(plan, tmp_path, show_progress=False)            # resumed: no floor measured again
    assert (tmp_path / rec.FILENAME).read_text() == before


def _timed(case, seconds, spread=0.1):
    return rec.StepRecord(case, rec.OK, timing={"median_s": seconds, "iqr_over_median": spread},
                          tokens_per_s=case.batch * case.steps / seconds)


@pytest.mark.parametrize("floor_s,expect", [
    (0.010, "torch builtin / fast LSTM: 2.00 (needs <= 1.25: NOT met"),     # floor under the bar
    (0.030, "torch fast LSTM / its floor (the products alone take 1.50x the built-in's step): "
            "1.33 (needs <= 1.1: NOT met"),
    (0.038, "its floor (the products alone take 1.90x the built-in's step): 1.05 (needs <= 1.1: "
            "met"),
])
def test_fast_is_judged_by_its_floor_where_the_products_alone_exceed_the_bar(floor_s, expect):
    from bench.speed import bars
    case = lambda impl: SpeedCase("torch", impl, "lstm", "train", 256, 32, 35, 28)
    records = [_timed(case("builtin"), 0.020), _timed(case("fast"), 0.040),
               rec.FloorRecord(case("fast"), rec.OK, kernels="k",
                               timing={"median_s": floor_s, "iqr_over_median": 0.05})]
    text = bars.bars_markdown(records)
    assert expect in text, text
    assert "| 256 | torch | lstm |" in bars.floor_table(records)
