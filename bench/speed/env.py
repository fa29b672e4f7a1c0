"""Threads and CPUs for the speed workers: the environment each framework's subprocess gets,
its CPU affinity, and how many threads actually worked during a timed region.

Every framework gets the same thread count: OpenMP, MKL and OpenBLAS read it from the
environment when they load (hence it is set before the subprocess starts); XLA's CPU pool
follows the CPU affinity (JAX has no thread setting), so with fewer threads than CPUs the worker
pins itself to the first `threads` CPUs. No framework and no NumPy is imported here.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Dict, List, Optional

from common.cpus import available_cpus

MIN_SAMPLE_S = 0.25  # shortest region whose per-thread CPU time means something
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MXNET_CPU_WORKER_NTHREADS", "XLA_FLAGS")


def thread_env(threads: int, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """`base` (default: this process's environment) with every thread knob set to `threads`."""
    env = dict(os.environ if base is None else base)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["MXNET_CPU_WORKER_NTHREADS"] = "1"  # one engine worker, `threads` OpenMP threads inside
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "multi_thread_eigen" not in f]
    if threads == 1:
        flags.append("--xla_cpu_multi_thread_eigen=false")
    env["XLA_FLAGS"] = " ".join(flags)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def pin_affinity(threads: int) -> List[int]:
    """Restrict this process to the first `threads` CPUs it may use (if fewer than all)."""
    cpus = available_cpus()
    if hasattr(os, "sched_setaffinity") and threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])
    return available_cpus()


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what `platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _thread_cpu_seconds() -> Dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


class ThreadSampler:
    """Which threads burned CPU between `start()` and `stop(wall_seconds)`: a framework-neutral
    count of the threads a computation really used (None where /proc is missing)."""

    def __init__(self, min_share: float = 0.1):
        self.min_share, self.before = min_share, None

    def start(self) -> None:
        self.before = _thread_cpu_seconds() if Path("/proc/self/task").exists() else None

    def stop(self, wall_seconds: float) -> Dict[str, Optional[float]]:
        """Busy threads and CPU seconds per wall second; None for regions too short to tell
        (the kernel counts CPU time in clock ticks, typically 10 ms)."""
        if self.before is None or wall_seconds < MIN_SAMPLE_S:
            return {"busy_threads": None, "cpu_per_wall": None}
        after = _thread_cpu_seconds()
        used = [after[t] - self.before.get(t, 0.0) for t in after]
        busy = sum(1 for u in used if u >= self.min_share * wall_seconds)
        return {"busy_threads": busy, "cpu_per_wall": round(sum(used) / wall_seconds, 2)}
