"""`rnnbench gpu`: everything a GPU box can tell, in one command, packed to carry home.

Runs from the source tree (`python3 -m bench gpu`) with whatever frameworks the machine has,
no network and no install: environment, parity on the device (float64 tight, float32 with TF32
off, and float32 with TF32 on, measured apart), the GPU speed grid, the explain rungs on the
device, the report, and one tarball of it all beside a copy of the report. `--device cpu` runs
the same steps on the CPU (with `--quick`, at one toy size and parity in float32 only: how CI
knows the command works).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench.core import records
from bench.core.repo import child_env
from common import atomic


# d2l's sizes, then the batch up to 1024 at H=1024 and the hidden size up to 4096 at B=256;
# bfloat16 at the sizes where a GPU's half-width products can show (d2l's H=1024 and the large)
GPU_SIZES = ((256, 32, 35, 28), (1024, 32, 35, 28), (1024, 128, 35, 28), (1024, 1024, 35, 28),
             (4096, 256, 35, 28))
BF16_SIZES = ((1024, 32, 35, 28), (1024, 1024, 35, 28), (4096, 256, 35, 28))
QUICK_SIZES = ((32, 8, 8, 28),)
CELLS = ("lstm", "gru")
SPEED_DTYPES = ("float32", "bfloat16")   # bfloat16 where the framework has it (not MXNet)
SIZES = {"float32": GPU_SIZES, "bfloat16": BF16_SIZES}


_START = [time.perf_counter()]


def _step(title: str) -> None:
    """A step's heading, with the seconds the job has run so far (the steps' costs in a log)."""
    print(f"\n== {title} (at {time.perf_counter() - _START[0]:.0f} s)", flush=True)


def speed_plan(device: str, quick: bool, dtype: str = "float32"):
    """The grid: every framework x impl, LSTM and GRU, train and infer, at GPU_SIZES (or the toy
    QUICK_SIZES), short budgets; the large square GEMM sized for the device's peak (float32
    only: the GEMM limits are float32's)."""
    from bench.speed import grid as g
    from bench.speed.env import available_cpus
    from common.speedcase import Budget, SpeedGrid
    grid = SpeedGrid(g.ALL["backends"], g.ALL["impls"], CELLS, g.ALL["modes"],
                     QUICK_SIZES if quick else SIZES[dtype], (device,), len(available_cpus()),
                     dtype=dtype)
    budget = Budget(warmup=1, min_repeats=2, seconds=0.05) if quick else g.QUICK_BUDGET
    square = 256 if quick else (8192 if device == "gpu" else g.DEFAULT_GEMM_SQUARE)
    return g.SpeedPlan(grid, budget, g.QUICK_GEMM_BUDGET, square, gemm=dtype == "float32")


def explain_config(device: str, quick: bool):
    """The explain rungs at d2l's H=256 and at 1024 (toy H=32 with `quick`), short budgets."""
    from dataclasses import replace

    from bench.explain import runner as explain
    cfg = explain.quick_config(devices=(device,))
    if quick:
        return replace(cfg, hidden_sizes=(32,), budget_s=0.05, min_repeats=2, warmup=1)
    return replace(cfg, hidden_sizes=(256, 1024))


def environment(out: Path) -> None:
    from bench.core import info
    from bench.core.probe import probe_all
    info.main()
    records.write_json(out / "environment.json", {"host": info.host_record(),
                                                  "backends": probe_all()})


def parity_tf32(device: str, out: Path) -> int:
    """float32 parity with TF32 on, in a process of its own (MXNet reads its TF32 switch when
    its libraries start); its exit status is only whether it ran."""
    if device != "gpu":
        print("TF32 is a GPU matmul mode: nothing to measure on the CPU")
        return 0
    env = child_env()
    cmd = [sys.executable, "-m", "bench", "parity", "--quick", "--dtypes", "float32", "--tf32",
           "--device", device, "--out", str(out)]
    return 1 if subprocess.run(cmd, env=env).returncode not in (0, 1) else 0


def pack(out: Path, into: Path) -> Path:
    """`into/<run>.tar.gz` holding the whole run directory, and `into/report.md` beside it."""
    into.mkdir(parents=True, exist_ok=True)
    tarball = into / f"{out.name}.tar.gz"
    with atomic.replacing(tarball, overwrite=True) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(out, arcname=out.name)
    report = out / "report.md"
    if report.exists() and into.resolve() != out.resolve():
        shutil.copyfile(report, into / "report.md")
    return tarball


def main(device: str = "gpu", out_root="rnnbench-results", quick: bool = False,
         pack_into=None) -> int:
    from bench.explain import runner as explain
    from bench.parity import runner as parity
    from bench.report import run_report as report
    from bench.speed import runner as speed
    out = records.new_run_dir(out_root, prefix=f"{device}-run")
    print(f"rnnbench {device} job; results in {out}")
    t0 = _START[0] = time.perf_counter()
    _step("environment")
    environment(out)
    # --quick (CI's check that the command works) runs float32 only: the suite checks float64
    dtypes = ("float32",) if quick else ("float64", "float32")
    _step(f"parity on {device} ({', '.join(dtypes)}; TF32 off)")
    status = parity.main(True, None, dtypes, device, out / "parity")
    _step(f"parity on {device}, float32 with TF32 on (measured, not judged)")
    status = max(status, parity_tf32(device, out / "parity-tf32"))
    for dtype in SPEED_DTYPES:
        _step(f"speed grid on {device}, {dtype}")
        status = max(status, speed.run_and_print(speed_plan(device, quick, dtype), out, False))
    _step(f"explain ladder on {device}")
    status = max(status, explain.main(explain_config(device, quick), out / "explain", quiet=True))
    _step("report")
    report.main(out)
    tarball = pack(out, Path(pack_into) if pack_into else out.parent)
    print(f"\n{device} job finished in {time.perf_counter() - t0:.0f} s; packed: {tarball}")
    print(json.dumps({"status": status, "results": str(out), "tarball": str(tarball)}))
    return status
