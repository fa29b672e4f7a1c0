"""One framework's speed measurements, in a process of its own: `python -m bench.speed.worker JOB`.

The parent (`bench/speed/runner.py`) writes a job file (backend, cases, budget, threads, output file)
and starts this module with the thread environment already set (`speed_env.thread_env`), so one
framework never shares a process with, or slows, another. For each device the job needs the
worker first times fp32 GEMMs of the shapes its cases run (and a large square one), then each
case, appending one record per measurement to the job's JSON Lines file. Progress goes to stdout
as lines `@@ START key`, `@@ DONE key STATUS`, `@@ SKIP key reason` for the parent's bar.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from bench.core.timing import measure
from bench.speed import env as speed_env, records as rec
from common.errors import NotSupported, RnnbenchError
from common.flops import case_flops, case_matmuls, gemm_bound_seconds
from common.speedcase import Budget, SpeedCase, Step, speed_data

Shape = Tuple[int, int, int]


def say(tag: str, key: str, text: str = "") -> None:
    print(f"@@ {tag} {key} {text}".rstrip(), flush=True)


def timed(step, budget: Budget, clock=time.perf_counter):
    """`measure(step.fn, step.sync, ...)` and the threads that worked: `(Timing, dict)`."""
    sampler = speed_env.ThreadSampler()
    sampler.start()
    start = clock()
    timing = measure(step.fn, step.sync, clock=clock, **budget.measure_kwargs())
    return timing, sampler.stop(clock() - start)


def gemm_shapes(cases: Iterable[SpeedCase], square: int) -> List[Shape]:
    """Every product shape the cases' steps run, and the large square one, without repeats."""
    shapes = {m.shape for c in cases for m in case_matmuls(c)}
    return sorted(shapes | {(square, square, square)})


def measure_gemm(module, backend, op, shape, device, threads, budget) -> rec.GemmRecord:
    M, K, N = shape
    record = rec.GemmRecord(backend, op, M, K, N, device, threads)
    try:
        step = module.gemm_step(op, M, K, N, device)
        timing, _ = timed(step, budget)
    except (NotSupported, RnnbenchError) as exc:
        record.status, record.note = rec.NOT_SUPPORTED, str(exc)
        return record
    record.device_name = step.device_name or speed_env.cpu_name()
    record.timing = timing.summary()
    record.gflops_per_s = 2 * M * K * N / timing.median / 1e9
    return record


class GemmTable:
    """Measured GEMM rates on one device: the best op per shape, the large square one's rate."""

    def __init__(self, records: Iterable[rec.GemmRecord], square: int):
        self.rates: Dict[Shape, float] = {}
        for r in records:
            if r.status == rec.OK:
                shape = (r.M, r.K, r.N)
                self.rates[shape] = max(self.rates.get(shape, 0.0), r.gflops_per_s)
        self.peak = self.rates.get((square, square, square))

    def rate_of(self, shape: Shape) -> float:
        """flop/s for a product of `shape`."""
        return self.rates[shape] * 1e9


def measure_case(module, case: SpeedCase, budget: Budget, table: GemmTable = None,
                 seed: int = 0, clock=time.perf_counter) -> rec.StepRecord:
    """Build and time one case; NotSupported (and a missing device) become records, not errors."""
    record = rec.StepRecord(case, rec.OK, seed=seed, versions=module.versions())
    ids, targets = speed_data(case, seed)
    try:
        step = module.build_step(case, ids, targets, seed)
    except NotSupported as exc:
        record.status, record.note = rec.NOT_SUPPORTED, str(exc)
        return record
    except RnnbenchError as exc:  # e.g. a GPU asked for that the framework does not see
        record.status, record.note = rec.NO_DEVICE, str(exc)
        return record
    timing, busy = timed(step, budget, clock)
    record.code_path = step.code_path
    record.device_name = step.device_name or speed_env.cpu_name()
    record.threads_used = {**module.threads_used(), **busy}
    record.timing = timing.summary()
    fill_rates(record, timing.median, table)
    return record


def measure_floor(backend: str, case: SpeedCase, budget: Budget) -> rec.FloorRecord:
    """The products alone of `case`'s training step (the rungs' `products_step` for its cell),
    timed as the step is: the floor under a scratch implementation."""
    from common.registry import get_module
    record = rec.FloorRecord(case, rec.OK)
    try:
        fn, sync, kernels = get_module(backend, "rungs").products_step(
            case.lm_config(), case.batch, case.steps, case.dtype, case.device)
        timing, _ = timed(Step(fn, sync, kernels), budget)
    except (NotSupported, RnnbenchError) as exc:
        record.status, record.note = rec.NOT_SUPPORTED, str(exc)
        return record
    except Exception as exc:  # a kernel the framework lacks in this dtype: recorded, go on
        record.status, record.note = rec.ERROR, f"{type(exc).__name__}: {exc}".strip()
        return record
    record.kernels, record.timing = kernels, timing.summary()
    return record


def wants_floor(case: SpeedCase) -> bool:
    """Floors stand beside the `fast` training steps: the bars for `fast` are judged by them."""
    return case.impl == "fast" and case.mode == "train"


def fill_rates(record: rec.StepRecord, seconds: float, table: GemmTable = None) -> None:
    """Tokens/s, GFLOP/s and the fractions of the GEMM limits from the median step time."""
    case = record.case
    record.tokens_per_s = case.tokens / seconds
    record.flops = case_flops(case)
    record.gflops_per_s = record.flops / seconds / 1e9
    if case.dtype != "float32":   # the GEMM limits are float32's: no fraction of them
        return
    if table is not None and table.peak:
        record.gemm_gflops = table.peak
        record.fraction_of_gemm = record.gflops_per_s / table.peak
    if table is not None and all(m.shape in table.rates for m in case_matmuls(case)):
        record.gemm_bound_s = gemm_bound_seconds(case, table.rate_of)
        record.fraction_of_shape_limit = record.gemm_bound_s / seconds


def hand_timed(step, n: int, clock=time.perf_counter) -> float:
    """Seconds per call of `step.fn`, timed as a plain loop is: the clock around `n` calls and
    one synchronisation at the end."""
    step.sync(step.fn())
    start, result = clock(), None
    for _ in range(n):
        result = step.fn()
    step.sync(result)
    return (clock() - start) / n


def bare_loop(module, case: SpeedCase, budget: Budget, rounds: int = 5,
              seed: int = 0) -> rec.BareLoopRecord:
    """The harness against hand timing, `rounds` alternating rounds of `n` steps each: the
    harness's `measure` of the step, the same step timed by hand (`hand_timed`), and the
    framework's hand-written plain loop (`module.bare_loop`). Each compares the best round's
    mean step time (the least disturbed by other processes)."""
    record = rec.BareLoopRecord(case, rec.OK, rounds=rounds)
    ids, targets = speed_data(case, seed)
    try:
        step = module.build_step(case, ids, targets, seed)
        module.bare_loop(case, ids, targets, 1)  # NotSupported before any timing
    except (NotSupported, RnnbenchError) as exc:
        record.status, record.note = rec.NOT_SUPPORTED, str(exc)
        return record
    probe = measure(step.fn, step.sync, warmup=budget.warmup, min_repeats=3, budget_s=0.0)
    n = max(5, min(200, int(budget.seconds / rounds / probe.median)))
    medians, means, loops, bares = [], [], [], []
    for _ in range(rounds):
        t = measure(step.fn, step.sync, warmup=1, min_repeats=n, budget_s=0.0, max_repeats=n)
        medians.append(t.median)
        means.append(statistics.fmean(t.times))
        loops.append(hand_timed(step, n))
        bares.append(module.bare_loop(case, ids, targets, n))
    record.steps = n
    record.harness_median_s = statistics.median(medians)
    record.harness_mean_s, record.loop_s, record.bare_s = min(means), min(loops), min(bares)
    record.overhead = record.harness_mean_s / record.loop_s - 1
    record.step_vs_bare = record.loop_s / record.bare_s - 1
    return record


def _env_record(module, backend: str, threads: int, affinity) -> rec.EnvRecord:
    env = {k: os.environ[k] for k in speed_env.THREAD_VARS if k in os.environ}
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else []
    return rec.EnvRecord(backend, module.versions(), module.gpu_names(), threads,
                         module.threads_used(), list(affinity), speed_env.cpu_name(), env, load,
                         os.cpu_count() or 0)


def _gemm_tables(module, job, cases, out, done) -> Dict[str, GemmTable]:
    """Measure (or reuse from `out`) the GEMMs of every device the cases run on."""
    backend, threads, square = job["backend"], job["threads"], job["gemm_square"]
    budget = Budget(**job["gemm_budget"])
    old = [r for r in rec.read(out) if r.kind == "gemm" and r.backend == backend]
    tables = {}
    for device in sorted({c.device for c in cases}):
        records = [r for r in old if r.device == device and r.threads == threads]
        for shape in gemm_shapes([c for c in cases if c.device == device], square):
            for op in module.GEMM_OPS:
                probe = rec.GemmRecord(backend, op, *shape, device, threads)
                if probe.key in done:
                    continue
                say("GEMM", probe.key)
                record = measure_gemm(module, backend, op, shape, device, threads, budget)
                rec.append(out, record)
                records.append(record)
        tables[device] = GemmTable(records, square)
    return tables


def _drop_missing_gpus(module, job, cases) -> List[SpeedCase]:
    """With `optional_gpu`, GPU cases of a framework that sees no GPU are skipped, said aloud."""
    if not job.get("optional_gpu") or module.gpu_names():
        return cases
    for c in cases:
        if c.device == "gpu":
            say("SKIP", c.key, f"{job['backend']} sees no GPU")
    return [c for c in cases if c.device != "gpu"]


def run(job: dict) -> int:
    from common.registry import get_module
    backend, threads, out = job["backend"], job["threads"], Path(job["out"])
    affinity = speed_env.pin_affinity(threads)
    module = get_module(backend, "speed")
    module.pin_threads(threads)
    rec.append(out, _env_record(module, backend, threads, affinity))
    done = rec.done_keys(rec.read(out))
    cases = [SpeedCase(**c) for c in job["cases"]]
    cases = _drop_missing_gpus(module, job, cases)
    todo = [c for c in cases if c.key not in done]
    tables = _gemm_tables(module, job, todo, out, done) if job.get("gemm", True) else {}
    budget, seed = Budget(**job["budget"]), job.get("seed", 0)
    for case in cases:
        if case.key in done:
            say("DONE", case.key, "resumed")
            continue
        say("START", case.key)
        try:
            record = measure_case(module, case, budget, tables.get(case.device), seed)
        except Exception as exc:  # a framework error (out of memory...): recorded, go on
            traceback.print_exc()
            record = rec.StepRecord(case, rec.ERROR, f"{type(exc).__name__}: {exc}".strip())
        rec.append(out, record)
        say("DONE", case.key, record.status)
        if wants_floor(case) and record.status == rec.OK and "floor/" + case.key not in done:
            rec.append(out, measure_floor(backend, case, budget))
    for c in (SpeedCase(**c) for c in job.get("bare_loop", [])):
        if ("bare-loop/" + c.key) not in done:
            say("START", "bare-loop/" + c.key)
            record = bare_loop(module, c, budget, seed=seed)
            rec.append(out, record)
            say("DONE", "bare-loop/" + c.key, record.status)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    try:
        return run(job)
    except Exception:  # the parent records the case in flight as an ERROR with this text
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
