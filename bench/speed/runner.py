"""`rnnbench speed`: run a speed grid, one subprocess per framework, into `DIR/speed.jsonl`.

Frameworks run one after another, never together, each in its own interpreter
(`bench.speed.worker`) started with the same thread settings (`speed_env.thread_env`). Records
are appended as they are made; a rerun with the same `--out` skips what is done. A worker that
dies leaves an ERROR record for the case in flight (with its last words) and is restarted on the
rest. A tqdm bar runs over the whole grid.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from bench.core.repo import ROOT, child_env
from bench.speed import env as speed_env, records as rec
from bench.speed.grid import SpeedPlan
from common import atomic
from common.registry import install_hint, missing_modules
from common.speedcase import SpeedCase



def job_for(plan: SpeedPlan, backend: str, cases: List[SpeedCase], out: Path) -> dict:
    """The worker's job file contents for one framework."""
    as_dict = lambda b: {"warmup": b.warmup, "min_repeats": b.min_repeats,
                         "seconds": b.seconds, "max_repeats": b.max_repeats}
    return {"backend": backend, "threads": plan.grid.threads, "out": str(out),
            "cases": [c.to_dict() for c in cases], "budget": as_dict(plan.budget),
            "gemm_budget": as_dict(plan.gemm_budget), "gemm_square": plan.gemm_square,
            "gemm": plan.gemm, "optional_gpu": plan.optional_gpu, "seed": plan.seed,
            "bare_loop": [c.to_dict() for c in plan.bare_loop_cases() if c.backend == backend]}


def _tail(path: Path, lines: int = 6) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:]) or "no output"


class Worker:
    """One framework's subprocess: start it, follow its progress lines, tell what was in flight."""

    def __init__(self, job_path: Path, log_path: Path, threads: int):
        self.job_path, self.log_path, self.threads = job_path, log_path, threads
        self.in_flight = None

    def run(self, on_progress) -> int:
        env = child_env(speed_env.thread_env(self.threads))
        with open(self.log_path, "a") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bench.speed.worker",
                                     str(self.job_path)], stdout=subprocess.PIPE, stderr=log,
                                    text=True, env=env, cwd=ROOT)
            for line in proc.stdout:
                if not line.startswith("@@ "):
                    continue
                tag, key, *rest = line[3:].split(maxsplit=2) + [""]
                self.in_flight = key if tag in ("START", "GEMM") else None
                on_progress(tag, key, rest[0].strip())
            return proc.wait()


def _not_installed(case: SpeedCase) -> rec.StepRecord:
    missing = ", ".join(missing_modules(case.backend))
    return rec.StepRecord(case, rec.NOT_INSTALLED,
                          f"not installed: {missing}; run {install_hint(case.backend)}")


def _without_absent_gpus(plan, backend, cases, old, on_progress) -> List[SpeedCase]:
    """With `optional_gpu`, a framework whose last worker saw no GPU (its env record) keeps
    only its CPU cases; the GPU ones are skipped, aloud, without starting a process."""
    envs = [r for r in old if r.kind == "env" and r.backend == backend]
    if not plan.optional_gpu or not envs or envs[-1].gpu_names:
        return cases
    for c in cases:
        if c.device == "gpu":
            on_progress("SKIP", c.key, f"{backend} saw no GPU")
    return [c for c in cases if c.device != "gpu"]


def run_backend(plan: SpeedPlan, backend: str, cases: List[SpeedCase], out_dir: Path,
                on_progress) -> None:
    """Measure one framework's cases (resuming), restarting its worker after a crash."""
    out = out_dir / rec.FILENAME
    if missing_modules(backend):
        for c in cases:
            rec.append(out, _not_installed(c))
            on_progress("DONE", c.key, rec.NOT_INSTALLED)
        return
    old, skipped = rec.read_checked(out)
    for line in skipped:
        sys.stderr.write(f"rnnbench: resuming past a bad record: {line}\n")
    done, cases = rec.done_keys(old), _without_absent_gpus(plan, backend, cases, old, on_progress)
    bare = ["bare-loop/" + c.key for c in plan.bare_loop_cases() if c.backend == backend]
    if all(c.key in done for c in cases) and all(k in done for k in bare):
        for key in [c.key for c in cases] + bare:  # resumed: nothing to start a process for
            on_progress("DONE", key, "resumed")
        return
    jobs = out_dir / ".jobs"
    jobs.mkdir(exist_ok=True)
    by_key: Dict[str, SpeedCase] = {c.key: c for c in cases}
    for attempt in range(len(cases) + 1):
        job_path = jobs / f"{backend}.json"
        atomic.write_text(job_path, json.dumps(job_for(plan, backend, cases, out), indent=1),
                          overwrite=True)
        worker = Worker(job_path, out_dir / f"worker-{backend}.log", plan.grid.threads)
        if worker.run(on_progress) == 0:
            return
        crashed = worker.in_flight
        note = f"worker exited abnormally: {_tail(worker.log_path)}"
        if crashed in by_key:
            rec.append(out, rec.StepRecord(by_key[crashed], rec.ERROR, note))
            on_progress("DONE", crashed, rec.ERROR)
            cases = [c for c in cases if c.key != crashed]
            by_key.pop(crashed)
            continue
        for c in cases:  # died outside a case (start-up, GEMMs): nothing to retry on
            if c.key not in rec.done_keys(rec.read(out)):
                rec.append(out, rec.StepRecord(c, rec.ERROR, note))
                on_progress("DONE", c.key, rec.ERROR)
        return


def run(plan: SpeedPlan, out_dir: Path, show_progress: bool = True) -> List[rec.Record]:
    """Measure the plan's grid into `out_dir/speed.jsonl`; returns every record there."""
    from bench.core.progress import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    cases = plan.grid.cases()
    total = len(cases) + len(plan.bare_loop_cases())
    bar = tqdm(total=total, desc="speed", unit="case", disable=not show_progress, leave=False)

    counted = set()  # a restarted worker reports the cases it resumes again

    def on_progress(tag, key, text):
        if tag in ("DONE", "SKIP") and key not in counted:
            counted.add(key)
            bar.update(1)
        bar.set_postfix_str(key if tag != "DONE" else f"{key} {text}")

    for backend in plan.grid.backends:
        mine = [c for c in cases if c.backend == backend]
        if mine:
            run_backend(plan, backend, mine, out_dir, on_progress)
    bar.close()
    return rec.read(out_dir / rec.FILENAME)


def run_and_print(plan, out: Path, show_progress: bool = True) -> int:
    """Run the plan into `out`, print the throughput tables; 1 if any case ended in ERROR."""
    from bench.speed import tables
    records = run(plan, out, show_progress)
    mine = {c.key for c in plan.grid.cases()}
    steps = [r for r in tables.steps(records) if r.key in mine]
    print(tables.throughput_tables(steps + tables.of_kind(records, "gemm"), markdown=False))
    for status, lines in tables.notes(steps).items():
        print(f"\n{status}:\n" + "\n".join(f"  {x}" for x in lines))
    print(f"\n{len(steps)} records in {out / rec.FILENAME}; `rnnbench report {out}` renders them")
    return 1 if any(r.status == rec.ERROR for r in steps) else 0
