"""The speed harness's arithmetic and bookkeeping, against hand counts and a fake clock.

One case throughout: LSTM (4 gate blocks), H=8, B=2, T=3, V=I=5 (one-hot). Its matrix products,
counted by hand (2*M*K*N each):
  input projection (T*B, I) x (I, 4H) = (6, 5) x (5, 32):  2*6*5*32     = 1920
  recurrence       (B, H) x (H, 4H)   = (2, 8) x (8, 32):  2*2*8*32 * 3 = 3072  (T of them)
  output layer     (T*B, H) x (H, V)  = (6, 8) x (8, 5):   2*6*8*5      =  480
forward 5472 flops; training (backward = 2x forward) 3 * 5472 = 16416.
"""
import json

import pytest

from bench.speed import runner as speed, records as rec, tables as speed_tables, worker
from bench.speed.grid import SpeedPlan
from common.flops import case_flops, case_matmuls, gemm_bound_seconds, step_flops
from common.speedcase import Budget, SpeedCase, SpeedGrid, Step

INPUT, RECURRENCE, OUTPUT = (6, 5, 32), (2, 8, 32), (6, 8, 5)
FORWARD = 1920 + 3072 + 480
# GFLOP/s chosen per shape; the bound is each product's flops over its rate
RATES = {INPUT: 2.0, RECURRENCE: 1.0, OUTPUT: 0.5}
BOUND_INFER = 1920 / 2e9 + 3072 / 1e9 + 480 / 0.5e9     # 4.992e-6 s
SQUARE, PEAK = 16, 4.0


def case(mode="train", backend="torch", cell="lstm", **kw):
    return SpeedCase(backend, "builtin", cell, mode, **{**dict(hidden=8, batch=2, steps=3,
                                                               vocab=5, threads=1), **kw})


def gemm(shape, rate, backend="torch", op="torch.matmul", device="cpu"):
    return rec.GemmRecord(backend, op, *shape, device, 1, gflops_per_s=rate)


def table():
    gemms = [gemm(s, r) for s, r in RATES.items()] + [gemm((SQUARE,) * 3, PEAK)]
    return worker.GemmTable(gemms, SQUARE)


# ---------------------------------------------------------------- FLOPs and the GEMM bound

def test_matmuls_and_flops_are_the_hand_counts():
    assert [(m.shape, m.count) for m in case_matmuls(case())] == [(INPUT, 1), (RECURRENCE, 3),
                                                                  (OUTPUT, 1)]
    assert case_flops(case("infer")) == FORWARD
    assert case_flops(case("train")) == 3 * FORWARD == 16416


@pytest.mark.parametrize("cell, gates", [("rnn", 1), ("gru", 3), ("lstm", 4)])
@pytest.mark.parametrize("mode, factor", [("infer", 1), ("train", 3)])
def test_step_flops_of_every_cell_and_mode(cell, gates, mode, factor):
    I, H, V, B, T = 7, 6, 11, 3, 4
    by_hand = 2 * T * B * I * gates * H + T * 2 * B * H * gates * H + 2 * T * B * H * V
    assert step_flops(cell, I, H, V, B, T, mode) == factor * by_hand


@pytest.mark.parametrize("mode, factor", [("infer", 1), ("train", 3)])
def test_gemm_bound_is_each_products_flops_over_its_shapes_rate(mode, factor):
    bound = gemm_bound_seconds(case(mode), lambda shape: RATES[shape] * 1e9)
    assert bound == pytest.approx(factor * BOUND_INFER, rel=1e-12)


def test_gemm_table_keeps_the_best_op_per_shape_and_the_large_squares_rate():
    t = worker.GemmTable([gemm(INPUT, 1.0, op="a"), gemm(INPUT, 3.0, op="b"),
                          gemm(INPUT, 2.0, op="c"), gemm((SQUARE,) * 3, PEAK),
                          rec.GemmRecord("torch", "d", *INPUT, "cpu", 1, status=rec.NOT_SUPPORTED)],
                         SQUARE)
    assert t.rate_of(INPUT) == 3e9 and t.peak == PEAK


@pytest.mark.parametrize("mode, factor", [("infer", 1), ("train", 3)])
def test_fill_rates_every_figure_exactly(mode, factor):
    seconds = 2e-5
    record = rec.StepRecord(case(mode), rec.OK)
    worker.fill_rates(record, seconds, table())
    assert record.tokens_per_s == pytest.approx(6 / seconds, rel=1e-12)         # 300000
    assert record.flops == factor * FORWARD
    assert record.gflops_per_s == pytest.approx(factor * FORWARD / seconds / 1e9, rel=1e-12)
    assert record.gemm_gflops == PEAK
    assert record.fraction_of_gemm == pytest.approx(factor * FORWARD / seconds / 1e9 / PEAK)
    assert record.gemm_bound_s == pytest.approx(factor * BOUND_INFER, rel=1e-12)
    assert record.fraction_of_shape_limit == pytest.approx(factor * BOUND_INFER / seconds)


def test_fill_rates_without_a_shape_leaves_the_shape_limit_empty():
    gemms = [gemm(INPUT, 2.0), gemm(RECURRENCE, 1.0), gemm((SQUARE,) * 3, PEAK)]
    record = rec.StepRecord(case(), rec.OK)
    worker.fill_rates(record, 1e-5, worker.GemmTable(gemms, SQUARE))
    assert record.gemm_bound_s is None and record.fraction_of_shape_limit is None
    assert record.fraction_of_gemm == pytest.approx(3 * FORWARD / 1e-5 / 1e9 / PEAK)


# ---------------------------------------------------------------- a fake clock

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeSpeed:
    """A framework speed module: each step call takes `step_s` on the fake clock; GEMM, build
    and bare-loop calls are recorded so a resumed run can be checked."""

    GEMM_OPS = ("fake.matmul",)

    def __init__(self, clock, step_s=0.25, gpus=()):
        self.clock, self.step_s, self.gpus = clock, step_s, list(gpus)
        self.built, self.gemms, self.bare = [], [], []

    def versions(self):
        return {"fake": "1"}

    def threads_used(self):
        return {"fake_threads": 1}

    def gpu_names(self):
        return self.gpus

    def pin_threads(self, threads):
        pass

    def _step(self):
        def fn():
            self.clock.now += self.step_s
        return Step(fn, lambda result: None, "fake path", "fake device")

    def build_step(self, case, ids, targets, seed=0):
        self.built.append(case.key)
        return self._step()

    def gemm_step(self, op, M, K, N, device="cpu", dtype="float32"):
        self.gemms.append((M, K, N))
        return self._step()

    def bare_loop(self, case, ids, targets, n):
        self.bare.append((case.key, n))
        return 0.1


def test_tokens_and_flops_per_second_from_a_fake_clock():
    clock = Clock()
    fake = FakeSpeed(clock, step_s=0.25)
    record = worker.measure_case(fake, case(), Budget(warmup=1, min_repeats=3, seconds=0.0),
                                 table(), clock=clock)
    assert record.status == rec.OK and record.timing["median_s"] == 0.25
    assert record.timing["repeats"] == 3 and record.timing["compile_s"] == 0.0
    assert record.tokens_per_s == 6 / 0.25 == 24.0
    assert record.gflops_per_s == pytest.approx(3 * FORWARD / 0.25 / 1e9, rel=1e-12)
    assert record.fraction_of_shape_limit == pytest.approx(3 * BOUND_INFER / 0.25, rel=1e-12)
    assert record.device_name == "fake device" and record.code_path == "fake path"


def test_gemm_rate_from_a_fake_clock(monkeypatch):
    clock, real = Clock(), worker.timed
    monkeypatch.setattr(worker, "timed", lambda step, budget: real(step, budget, clock))
    fake = FakeSpeed(clock, step_s=0.5)
    r = worker.measure_gemm(fake, "fake", "fake.matmul", (4, 5, 6), "cpu", 1,
                            Budget(0, 2, 0.0))
    assert r.gflops_per_s == pytest.approx(2 * 4 * 5 * 6 / 0.5 / 1e9, rel=1e-12)


# ---------------------------------------------------------------- what the report prints

def _report_records():
    train = rec.StepRecord(case(), rec.OK, timing={"median_s": 2e-5, "min_s": 1e-5,
                                                  "iqr_over_median": 0.05, "repeats": 7,
                                                  "compile_s": 0.5})
    worker.fill_rates(train, 2e-5, table())
    gemms = [gemm(s, r) for s, r in RATES.items()]
    gemms += [gemm(INPUT, 1.0, backend="jax", op="jnp.matmul"),       # slower: not the limit
              gemm((SQUARE,) * 3, PEAK), gemm((SQUARE,) * 3, 3.0, backend="jax", op="jnp.matmul"),
              gemm((8, 8, 8), 100.0)]                                 # fast but not the largest
    bare = rec.BareLoopRecord(case(), rec.OK, steps=50, rounds=5, harness_median_s=0.011,
                              harness_mean_s=0.0121, loop_s=0.011, bare_s=0.01,
                              overhead=0.0121 / 0.011 - 1, step_vs_bare=0.011 / 0.01 - 1)
    return [train, *gemms, bare]


def _row(markdown_table, first_cell):
    lines = [line.strip("|").split("|") for line in markdown_table.splitlines()]
    head = [x.strip() for x in lines[0]]
    rows = [[x.strip() for x in line] for line in lines[2:] if line[0].strip() == first_cell]
    assert len(rows) == 1, markdown_table
    return dict(zip(head, rows[0]))


def test_machine_peak_is_the_largest_square_at_its_best_rate():
    assert speed_tables.machine_peaks(_report_records()) == {"cpu": PEAK}


def test_detail_table_prints_every_figure_of_the_step():
    row = _row(speed_tables.detail_table(_report_records()), "torch/builtin")
    # 16416 flops in 20 us: 0.8208 GFLOP/s, 20.52% of 4 GFLOP/s; bound 14.976 us: 74.88%
    assert row["tokens/s"] == "300,000" and row["median ms"] == "0.02"
    assert row["GFLOP/s"] == "0.821" and row["% GEMM peak"] == "21%"
    assert row["% shape limit"] == "75%" and row["n"] == "7" and row["spread"] == "5%"


def test_throughput_table_prints_tokens_per_second_and_the_peak_fraction():
    text = speed_tables.throughput_tables(_report_records(), markdown=True)
    assert _row(text.split("\n\n", 1)[1], "lstm")["torch/builtin"] == "300.0k (21%)"


def test_bare_loop_table_prints_the_overheads():
    row = _row(speed_tables.bare_loop_table(_report_records()), case().key)
    assert row["harness overhead"] == "+10.0%" and row["suite step vs plain"] == "+10.0%"
    assert row["plain loop ms"] == "10.00" and row["steps x rounds"] == "50 x 5"


# ---------------------------------------------------------------- resume, every record kind

def _job(out, cases, bare=()):
    return {"backend": "torch", "threads": 1, "out": str(out), "gemm": True, "gemm_square": SQUARE,
            "cases": [c.to_dict() for c in cases], "seed": 0, "bare_loop": [c.to_dict() for c in bare],
            "budget": {"warmup": 0, "min_repeats": 1, "seconds": 0.0, "max_repeats": 1},
            "gemm_budget": {"warmup": 0, "min_repeats": 1, "seconds": 0.0, "max_repeats": 1}}


def test_worker_resume_skips_every_done_record_kind(tmp_path, monkeypatch):
    import common.registry
    fake = FakeSpeed(Clock())
    monkeypatch.setattr(common.registry, "get_module", lambda name, module: fake)
    done, no_device, todo = case(), case(mode="infer"), case(cell="gru")
    out = tmp_path / rec.FILENAME
    shapes = worker.gemm_shapes([done, no_device, todo], SQUARE)
    rec.append(out, rec.EnvRecord("torch", {}, [], 1, {}, [0], "cpu", {}))
    for shape in shapes:
        rec.append(out, rec.GemmRecord("torch", "fake.matmul", *shape, "cpu", 1,
                                       gflops_per_s=RATES.get(shape, PEAK)))
    rec.append(out, rec.StepRecord(done, rec.OK))
    rec.append(out, rec.StepRecord(no_device, rec.NO_DEVICE, note="no GPU"))
    rec.append(out, rec.BareLoopRecord(done, rec.OK, steps=5, rounds=1))
    before = len(rec.read(out))
    assert worker.run(_job(out, [done, no_device, todo], bare=[done])) == 0
    assert fake.gemms == [] and fake.bare == []          # GEMMs and the bare loop reused
    assert fake.built == [todo.key]                       # only the case not done
    new = rec.read(out)[before:]
    assert [r.kind for r in new] == ["env", "step"]       # each run says what it saw
    step = new[1]
    # the resumed GEMM records still give the new case its limits
    assert step.gemm_gflops == PEAK and step.fraction_of_shape_limit is not None


def test_worker_measures_the_gemm_shapes_and_bare_loop_it_lacks(tmp_path, monkeypatch):
    import common.registry
    fake = FakeSpeed(Clock())
    monkeypatch.setattr(common.registry, "get_module", lambda name, module: fake)
    out = tmp_path / rec.FILENAME
    rec.append(out, rec.GemmRecord("torch", "fake.matmul", *INPUT, "cpu", 1, gflops_per_s=2.0))
    rec.append(out, rec.GemmRecord("torch", "fake.matmul", *OUTPUT, "cpu", 1, status=rec.ERROR))
    assert worker.run(_job(out, [case()], bare=[case()])) == 0
    assert sorted(fake.gemms) == sorted([RECURRENCE, OUTPUT, (SQUARE,) * 3])
    assert [key for key, _ in fake.bare] == [case().key, *[case().key] * 5]


def test_parent_starts_no_worker_only_when_cases_and_bare_loops_are_done(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(speed.Worker, "run", lambda self, on_progress: started.append(
        json.loads(self.job_path.read_text())) or 0)
    grid = SpeedGrid(("torch",), ("builtin",), ("lstm",), ("train",), ((8, 2, 3, 5),), threads=1)
    plan = SpeedPlan(grid, Budget(0, 1, 0.0), Budget(0, 1, 0.0), gemm_square=SQUARE,
                     bare_loop=True)
    (c,) = grid.cases()
    rec.append(tmp_path / rec.FILENAME, rec.StepRecord(c, rec.OK))
    speed.run(plan, tmp_path, show_progress=False)
    assert len(started) == 1 and started[0]["bare_loop"] == [c.to_dict()]
    rec.append(tmp_path / rec.FILENAME, rec.BareLoopRecord(c, rec.OK))
    speed.run(plan, tmp_path, show_progress=False)
    assert len(started) == 1


@pytest.mark.parametrize("status, final", [(rec.OK, True), (rec.NOT_SUPPORTED, True),
                                           (rec.NO_DEVICE, True), (rec.ERROR, False),
                                           (rec.NOT_INSTALLED, False)])
def test_which_statuses_a_rerun_repeats(status, final):
    records = [rec.StepRecord(case(), status), rec.GemmRecord("torch", "op", 1, 2, 3, "cpu", 1,
                                                              status=status),
               rec.BareLoopRecord(case(), status)]
    assert rec.done_keys(records) == ({r.key for r in records} if final else set())
    assert rec.done_keys(records + [rec.StepRecord(case(), rec.ERROR)]) == (
        {r.key for r in records[1:]} if final else set())
