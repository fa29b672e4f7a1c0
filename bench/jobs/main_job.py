"""The main job (`rnnbench`, `rnnbench run`): environment, generated data, quick parity, the quick
speed grid, the quick explain rungs, and the report.

Everything runs on data the code generates itself (no download) and lands in a new
`rnnbench-results/run-*` directory; the report (`report.md` and its charts) is written there.
"""
from __future__ import annotations

import time
from pathlib import Path

from bench.core import datastats, info, records
from bench.parity import runner as parity


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run_speed(out: Path) -> int:
    """The quick speed grid on the CPU (and each GPU a framework sees), every CPU thread."""
    from bench.speed import runner as speed
    from bench.speed.env import available_cpus
    from bench.speed.grid import quick_plan
    plan = quick_plan(len(available_cpus()), ("cpu", "gpu"), optional_gpu=True)
    return speed.run_and_print(plan, out)


def run_explain(out: Path) -> int:
    """`bench.explain.runner.main_quick(out)`; a failure inside it is reported without stopping
    the job (the report still follows)."""
    from bench.explain import runner as explain
    try:
        return int(explain.main_quick(Path(out)) or 0)
    except Exception as exc:  # reported, and the job goes on to the report
        print(f"explain ladder failed: {type(exc).__name__}: {exc}")
        return 1


def main(out_root="rnnbench-results") -> int:
    from bench.report import run_report as report
    out = records.new_run_dir(out_root, prefix="run")
    print(f"rnnbench main job; results in {out}")
    t0 = _step("environment (rnnbench info)")
    info.main()
    _step("generated corpus (rnnbench data human_numbers)")
    datastats.main("human_numbers")
    _step("quick parity (rnnbench parity --quick)")
    status = parity.main(True, None, ("float64", "float32"), "cpu", Path(out))
    t1 = _step("quick speed grid (rnnbench speed --quick)")
    status = max(status, run_speed(Path(out)))
    t2 = _step("quick explain ladder (rnnbench explain --quick)")
    status = max(status, run_explain(Path(out)))
    t3 = _step("report (rnnbench report)")
    report.main(Path(out))
    t4 = time.perf_counter()
    print(f"\nmain job finished in {t4 - t0:.0f} s (speed {t2 - t1:.0f} s, explain "
          f"{t3 - t2:.0f} s, report {t4 - t3:.0f} s); report: {Path(out) / report.REPORT}")
    return status
