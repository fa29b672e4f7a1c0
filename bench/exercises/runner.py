"""`rnnbench exercises`: the exercises of d2l's RNN chapters, each answered by an experiment run
in every framework. This module holds the sizes (quick and the books'), the shared context
(corpora, trained-model cache) and the runner; the registry is `bench/exercises/registry.py`, the
experiments live in `bench/exercises/{text,train,sine}.py`, the write-up in
`bench/exercises/report.py`.
"""
from __future__ import annotations

import importlib
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from bench.core import status as S
from bench.exercises.registry import REGISTRY, Exercise, Result
from common.errors import DataError, NotSupported, RnnbenchError

GROUPS = ("bench.exercises.text", "bench.exercises.train", "bench.exercises.sine")
BACKENDS = ("torch", "mxnet", "jax")


@dataclass(frozen=True)
class Settings:
    """Sizes of every experiment. `quick`: small enough for all sixteen in minutes on 2 cores;
    `full`: d2l 1.0 §9.5's (hidden 32, num_steps 32, lr 1, clip 1, 100 epochs; 512 rows of
    sequential partitioning give about d2l's 10 updates per epoch). Three seeds and twelve search
    trials per framework keep the full run near six hours of one core (about 100 s per 100-epoch
    training here)."""
    name: str
    max_tokens: int          # characters of The Time Machine used (train + validation)
    val_fraction: float
    hidden: int
    num_steps: int
    batch_size: int
    epochs: int
    lr: float
    seeds: tuple
    kmax: int                # farthest perturbation distance (exercise 1)
    num_sequences: int       # sequences averaged per distance (exercise 1)
    sample_len: int          # characters generated per alpha (exercise 8)
    trials: int              # search budget per framework (exercise 4)
    other_tokens: int        # characters of other books scored (exercises 6, 7)
    sine_steps: int          # Adam steps of the noisy-sine RNN (exercise 13)
    impl: str = "scratch"    # d2l §9.5's model; at these sizes also the fastest everywhere


QUICK = Settings("quick", 12_000, 0.1, 32, 16, 32, 6, 1.0, (0, 1), 64, 8, 120, 2, 3_000, 150)
FULL = Settings("full", -1, 0.1, 32, 32, 512, 100, 1.0, (0, 1, 2), 256, 64, 500, 12,
                50_000, 1500)


def registry() -> Dict[int, Exercise]:
    for module in GROUPS:
        importlib.import_module(module)
    return dict(sorted(REGISTRY.items()))


@dataclass
class Context:
    """What every experiment shares: sizes, backends, where corpora are, where to write, and the
    models trained so far (keyed by what defines them, so exercises reuse each other's)."""
    settings: Settings
    backends: tuple
    out: Path
    data_dir: Optional[Path] = None
    progress: bool = True
    cache: dict = field(default_factory=dict)

    def corpus_path(self, filename: str) -> Optional[Path]:
        """The corpus file in `data_dir`, or None (the loader then downloads where it can)."""
        if self.data_dir is None:
            return None
        path = self.data_dir / filename
        return path if path.is_file() else None

    def log(self, message: str) -> None:
        if self.progress:
            print(f"  {message}", flush=True)


def parse_only(numbers, known) -> List[int]:
    """The exercise numbers asked for (all when none), each checked against `known`."""
    if not numbers:
        return list(known)
    bad = [n for n in numbers if n not in known]
    if bad:
        raise ValueError(f"no exercise {', '.join(map(str, bad))}: choose from 1 to {max(known)}")
    return sorted(set(numbers))


def run_one(ex: Exercise, ctx: Context) -> Result:
    """Run one experiment; an error or a NotSupported is recorded in its result, not raised."""
    start = time.perf_counter()
    try:
        result = ex.run(ctx)
    except NotSupported as exc:
        result = Result([], f"Not supported here: {exc}", status=S.NOT_SUPPORTED_HERE)
    except (RnnbenchError, DataError, ValueError, RuntimeError, FileNotFoundError) as exc:
        detail = traceback.format_exc(limit=3)
        result = Result([], f"The experiment failed: {type(exc).__name__}: {exc}",
                        status=S.RUN_ERROR,
                        records={"traceback": detail})
    result.seconds = time.perf_counter() - start
    return result


def default_data_dir() -> Optional[Path]:
    env = os.environ.get("RNNBENCH_DATA")
    return Path(env) if env else None


def single_thread_torch(backends) -> None:
    """These models are tiny: torch's thread pool costs more than it gains (measured 7x slower
    per step with 2 threads on a loaded 2-core machine), so torch runs on one thread here."""
    if "torch" in backends:
        import torch
        torch.set_num_threads(1)


def main(quick: bool, only=None, out=None, backends=None, data_dir=None,
         progress: bool = True, rewrite: bool = False) -> int:
    """Run the chosen exercises, write `exercises.md`, PNGs and `exNN.json`; 1 if any failed.
    `rewrite`: run nothing, write `exercises.md` again from the records in `out`."""
    from bench.exercises import report as exercises_report
    settings = QUICK if quick else FULL
    single_thread_torch(backends or BACKENDS)
    exercises = registry()
    chosen = [] if rewrite else parse_only(only, exercises)
    out = Path(out or f"rnnbench-results/exercises{'-quick' if quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    ctx = Context(settings, tuple(backends or BACKENDS), out, data_dir, progress)
    results, start = {}, time.perf_counter()
    for n in chosen:
        if progress:
            print(f"exercise {n}: {exercises[n].question.splitlines()[0][:70]}", flush=True)
        results[n] = run_one(exercises[n], ctx)
        exercises_report.write_record(out, exercises[n], results[n], settings, ctx.backends)
        if progress:
            print(f"  {results[n].status} in {results[n].seconds:.1f} s", flush=True)
    total = time.perf_counter() - start
    shown = {**exercises_report.earlier_results(out, exercises, settings), **results}
    shown = dict(sorted(shown.items()))
    path = exercises_report.write_markdown(out, exercises, shown, settings, ctx.backends,
                                           sum(r.seconds for r in shown.values()))
    print(f"wrote {path} ({len(results)} exercises run in {total:.0f} s, "
          f"{len(shown) - len(results)} kept from earlier records)")
    return 1 if any(r.status == S.RUN_ERROR for r in results.values()) else 0
