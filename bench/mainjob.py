"""The main job (`rnnbench`, `rnnbench run`): environment, generated data, quick parity.

Everything runs on data the code generates itself (no download) and lands in a new
`rnnbench-results/run-*` directory.
"""
from __future__ import annotations

import time
from pathlib import Path

from bench import datastats, info, parity_report, records


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def main(out_root="rnnbench-results", quick: bool = True) -> int:
    out = records.new_run_dir(out_root, prefix="run")
    print(f"rnnbench main job; results in {out}")
    t0 = _step("environment (rnnbench info)")
    info.main()
    _step("generated corpus (rnnbench data human_numbers)")
    datastats.main("human_numbers")
    _step("quick parity (rnnbench parity --quick)")
    status = parity_report.main(quick, None, ("float64", "float32"), "cpu", Path(out))
    print(f"\nmain job finished in {time.perf_counter() - t0:.0f} s; results in {out}")
    return status
