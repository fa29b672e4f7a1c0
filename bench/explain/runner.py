"""`rnnbench explain`: why does Gluon's concise LSTM train faster than d2l's scratch one?

Runs the rungs of common/rungs.py in every framework, each in its own process
(bench/explain/worker.py) with the same pinned thread count, and writes to the output directory
`explain.json` (one `RungRecord` per framework, hidden size and rung, and one `FloorRecord` per
framework and hidden size: the products alone), `explain.png` (the ladder
per framework) and `why-gluon-is-faster.md` (the answer in prose, every number read from the
records; bench/explain/report.py).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional

from bench.core import records
from bench.core import status as S
from bench.core.repo import child_env
from common.cpus import cpu_count
from common.registry import install_hint, is_available
from common.rungs import RUNG_INFO, ExplainConfig, gap_closed

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Each framework's rungs.RUNGS, known here without importing it (for the progress bar).
FRAMEWORK_RUNGS = {"torch": ("d2l", "fused", "hoisted", "compiled", "hand_vjp", "packed", "fast",
                             "builtin"),
                   "mxnet": ("d2l", "fused", "hoisted", "onednn", "compiled", "eltwise",
                             "hand_vjp", "fast", "builtin"),
                   "jax": ("d2l", "fused", "hoisted", "compiled", "hand_vjp", "fast", "builtin")}


@dataclass
class RungRecord:
    """One rung of one framework at one hidden size, trained on d2l's batch shape."""

    framework: str
    rung: str
    label: str
    hidden: int
    batch: int
    steps: int
    vocab: int
    dtype: str
    device: str                           # "cpu" or "gpu", as asked
    threads: Optional[int]
    cpus: Optional[int]
    versions: Dict[str, str] = field(default_factory=dict)
    code_path: str = ""
    median_s: Optional[float] = None      # seconds per training step
    spread: Optional[float] = None        # inter-quartile range over the median
    min_s: Optional[float] = None
    repeats: int = 0
    compile_s: Optional[float] = None     # first step beyond a steady one
    tokens_per_s: Optional[float] = None
    ops_per_step: Optional[float] = None  # kernels per time step: a training step's over T
    ops_source: str = ""
    gap_closed: Optional[float] = None    # share of the d2l-to-built-in step-time gap closed
    parity_error: Optional[float] = None  # max |rung - built-in| at this size, in `dtype`
    parity64_error: Optional[float] = None  # the same in float64 on a small case
    parity64_note: str = ""
    device_name: str = ""                 # what the framework reports for `device`
    status: str = S.RAN                   # RAN | RUN_ERROR | DEVICE_UNSEEN (`bench.core.status`)
    error: Optional[str] = None


@dataclass
class FloorRecord:
    """The products of one training step alone (common.rungs.PRODUCTS) in one framework at one
    hidden size: the least time any of its hand-written rungs can take."""

    framework: str
    hidden: int
    device: str
    kernels: str = ""
    median_s: Optional[float] = None
    spread: Optional[float] = None
    repeats: int = 0
    status: str = S.RAN
    error: Optional[str] = None


def to_floor(event: dict) -> FloorRecord:
    timing = event.get("timing") or {}
    return FloorRecord(event["framework"], event["hidden"], event["device"],
                       event.get("kernels", ""), timing.get("median_s"),
                       timing.get("iqr_over_median"), timing.get("repeats", 0),
                       event.get("status", S.RUN_ERROR), event.get("error"))


def to_record(event: dict, cfg: ExplainConfig) -> RungRecord:
    """A worker's `record` event -> a `RungRecord` (gap_closed is filled in later)."""
    timing = event.get("timing") or {}
    median = timing.get("median_s")
    ops = event.get("ops")
    return RungRecord(
        framework=event["framework"], rung=event["rung"], label=RUNG_INFO[event["rung"]].label,
        hidden=event["hidden"], batch=cfg.batch, steps=cfg.steps, vocab=cfg.vocab,
        dtype=cfg.dtype, device=event["device"], threads=event.get("threads"),
        cpus=event.get("cpus"), versions=event.get("versions", {}),
        code_path=event.get("code_path", ""), median_s=median,
        spread=timing.get("iqr_over_median"), min_s=timing.get("min_s"),
        repeats=timing.get("repeats", 0), compile_s=timing.get("compile_s"),
        tokens_per_s=cfg.tokens_per_step / median if median else None,
        ops_per_step=ops / cfg.steps if ops is not None else None,
        ops_source=event.get("ops_source", ""), parity_error=event.get("parity_error"),
        parity64_error=event.get("parity64_error"),
        parity64_note=event.get("parity64_note", ""),
        device_name=str(event.get("device_name", "")), status=event.get("status", S.RUN_ERROR),
        error=event.get("error"))


def fill_gaps(recs: List[RungRecord]) -> None:
    """Set each record's `gap_closed` against its framework's d2l and built-in at its size
    and device."""
    medians = {(r.framework, r.device, r.hidden, r.rung): r.median_s for r in recs}
    for r in recs:
        d2l = medians.get((r.framework, r.device, r.hidden, "d2l"))
        builtin = medians.get((r.framework, r.device, r.hidden, "builtin"))
        if r.median_s and d2l and builtin:
            r.gap_closed = gap_closed(r.median_s, d2l, builtin)


def worker_env(cfg: ExplainConfig) -> dict:
    """The environment of a worker: every thread variable at `cfg.threads`."""
    return child_env(dict(os.environ, **{k: str(cfg.threads) for k in THREAD_VARS}))


def run_framework(framework: str, device: str, cfg: ExplainConfig, bar=None,
                  floors: Optional[List[FloorRecord]] = None) -> List[RungRecord]:
    """Run one framework's worker on `device`; records as they come, errors recorded, never
    raised; the worker's floors appended to `floors`."""
    config = json.dumps({f.name: getattr(cfg, f.name) for f in fields(cfg)})
    proc = subprocess.Popen([sys.executable, "-m", "bench.explain.worker", framework, device,
                             config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=worker_env(cfg))
    recs = []
    for line in proc.stdout:
        if not line.startswith("{"):
            continue  # a framework printing to stdout
        event = json.loads(line)
        if event["event"] == "start" and bar is not None:
            bar.set_postfix_str(f"{framework} {device} {event['rung']} H={event['hidden']}")
        elif event["event"] == "record":
            recs.append(to_record(event, cfg))
            if bar is not None:
                bar.update(1)
        elif event["event"] == "floor" and floors is not None:
            floors.append(to_floor(event))
    stderr = proc.stderr.read()
    if proc.wait() != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        recs.append(RungRecord(framework, "builtin", RUNG_INFO["builtin"].label, 0, cfg.batch,
                               cfg.steps, cfg.vocab, cfg.dtype, device, cfg.threads, None,
                               status=S.RUN_ERROR,
                               error=f"worker failed (exit {proc.returncode}): {last}"))
    return recs


def planned(framework: str, cfg: ExplainConfig) -> int:
    rungs = [r for r in FRAMEWORK_RUNGS[framework] if r in cfg.rungs]
    return len(rungs) * len(cfg.hidden_sizes) * len(cfg.devices)


def main(cfg: ExplainConfig, out: Path, quiet: bool = False) -> int:
    """Run the rungs; write explain.json, explain.png and why-gluon-is-faster.md in `out`."""
    from bench.core.progress import tqdm

    from bench.explain import report as explain_report
    frameworks = [f for f in cfg.frameworks if is_available(f)]
    for name in set(cfg.frameworks) - set(frameworks):
        print(f"explain: skipping {name}, not installed ({install_hint(name)})")
    recs: List[RungRecord] = []
    floors: List[FloorRecord] = []
    total = sum(planned(f, cfg) for f in frameworks)
    with tqdm(total=total, desc="explain", unit="rung", disable=quiet) as bar:
        for device in cfg.devices:
            for framework in frameworks:
                recs += run_framework(framework, device, cfg, bar, floors)
                fill_gaps(recs)
                write(out, cfg, recs, floors)
    explain_report.write_all(out, asdict_config(cfg), [asdict(r) for r in recs],
                             [asdict(f) for f in floors])
    print(explain_report.summary_table([asdict(r) for r in recs]))
    print(f"wrote {out / 'explain.json'}, {out / 'why-gluon-is-faster.md'}, "
          f"{out / 'explain.png'}")
    return 1 if any(r.status == S.RUN_ERROR for r in recs) else 0


def asdict_config(cfg: ExplainConfig) -> dict:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def write(out: Path, cfg: ExplainConfig, recs: List[RungRecord],
          floors: List[FloorRecord] = ()) -> Path:
    return records.write_json(out / "explain.json",
                              {"config": asdict_config(cfg), "records": [asdict(r) for r in recs],
                               "floors": [asdict(f) for f in floors]}, overwrite=True)


def quick_config(threads: Optional[int] = None, devices=("cpu",)) -> ExplainConfig:
    """H=256 only, short budgets: a couple of minutes on two cores."""
    threads = threads or default_threads()
    # Two warm-up steps: TorchScript's profiling executor optimizes on the second call.
    return ExplainConfig(hidden_sizes=(256,), threads=threads, budget_s=0.5, min_repeats=3,
                         warmup=2, devices=tuple(devices))


def gpu_visible() -> bool:
    """Whether `nvidia-smi -L` lists a GPU (no framework is imported to find out)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "GPU" in proc.stdout


def default_threads() -> int:
    """The CPUs this process may use (at least 1)."""
    return cpu_count()


def main_quick(out: Path) -> int:
    """The main job's part: the quick rungs into `out` (`rnnbench run` calls this), on the
    CPU and on the GPU where one is visible (a framework that cannot see it says so)."""
    devices = ("cpu", "gpu") if gpu_visible() else ("cpu",)
    return main(quick_config(devices=devices), Path(out), quiet=True)

