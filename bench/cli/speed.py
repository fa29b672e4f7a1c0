"""The `speed` verb: options and the plan they build."""
from __future__ import annotations

import dataclasses

from bench.cli.argtypes import non_negative_seconds, positive_int
from bench.speed.grid import ALL, GRIDS
from common.config import SPEED_DTYPES

DEVICE_CHOICES = ("auto", "cpu", "gpu")



def add_speed(sub):
    from bench.speed.env import available_cpus
    p = sub.add_parser("speed", help="tokens/s of training and inference steps, every framework "
                                     "x impl x cell, beside the machine's GEMM limit")
    p.add_argument("--quick", action="store_true",
                   help="the main job's grid: H=256 B=32 T=35 V=28, LSTM and GRU, short budgets")
    p.add_argument("--grid", choices=GRIDS, default="full",
                   help="d2l (H=256,1024 at B=32 T=35 V=28), sweeps (over H, T, B) or full "
                        "(both; the default)")
    for name in ("backends", "impls", "cells", "modes"):
        p.add_argument(f"--{name}", nargs="+", choices=ALL[name], metavar=name[:-1].upper(),
                       help=f"default: all of {', '.join(ALL[name])}")
    for name, what in (("hidden", "H"), ("batch", "B"), ("steps", "T"), ("vocab", "V")):
        p.add_argument(f"--{name}", nargs="+", type=positive_int, metavar=what,
                       help=f"explicit {what} values (replaces --grid; unset axes take d2l's)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto: the CPU, and the GPU for each framework that sees one")
    p.add_argument("--threads", type=positive_int, default=len(available_cpus()),
                   help="CPU threads, the same for every framework (default: every CPU)")
    p.add_argument("--budget", type=non_negative_seconds, help="seconds of timed repeats per case "
                   "(default 1; --quick 0.3)")
    p.add_argument("--min-repeats", type=positive_int, help="at least this many timed repeats")
    p.add_argument("--max-repeats", type=positive_int, help="at most this many timed repeats")
    p.add_argument("--warmup", type=int, choices=range(0, 101), metavar="N",
                   help="untimed calls after the first (compile) call")
    p.add_argument("--gemm-size", type=positive_int, help="side of the large square GEMM "
                   "(default 2048; --quick 1024)")
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMM limit measurements")
    p.add_argument("--bare-loop", action="store_true", help="also time a hand-written PyTorch "
                   "loop against the harness (torch built-in LSTM, train)")
    p.add_argument("--gru-variant", choices=("reset_after", "reset_before"), default="reset_after")
    p.add_argument("--dtype", choices=SPEED_DTYPES, default="float32",
                   help="float32 (default), float64, or bfloat16 (where the framework has it; "
                        "no fraction of the float32 GEMM limit is given for it)")
    p.add_argument("--out", help="results directory; an existing one is resumed "
                                 "(default: a new rnnbench-results/speed-* directory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_speed)



AXES = ("backends", "impls", "cells", "modes")
DEVICES = {"auto": ("cpu", "gpu"), "cpu": ("cpu",), "gpu": ("gpu",)}


def _budget(base, args):
    """`base` (a `Budget`) with the options given on top; max_repeats rises to min_repeats
    unless it was given too (then a contradiction is a one-line error)."""
    from common.speedcase import Budget
    given = {"seconds": args.budget, "min_repeats": args.min_repeats,
             "max_repeats": args.max_repeats, "warmup": args.warmup}
    values = {**dataclasses.asdict(base), **{k: v for k, v in given.items() if v is not None}}
    if args.max_repeats is None:
        values["max_repeats"] = max(values["max_repeats"], values["min_repeats"])
    return Budget(**values)


def plan_from_args(args):
    """The `SpeedPlan` the options describe: `--quick`'s plan (or `--grid`'s sizes over every
    backend, impl, cell and mode), then each option given on top of it."""
    from bench.speed import grid as g
    from common.speedcase import SpeedGrid
    devices = DEVICES[args.device]
    base = g.quick_plan(args.threads, devices) if args.quick else g.SpeedPlan(SpeedGrid(
        *(g.ALL[name] for name in AXES), g.named_sizes(args.grid), devices, args.threads))
    explicit = any(getattr(args, a) for a in ("hidden", "batch", "steps", "vocab"))
    sizes = g.product_sizes(args.hidden, args.batch, args.steps, args.vocab) if explicit \
        else base.grid.sizes
    grid = dataclasses.replace(base.grid, sizes=sizes, gru_variant=args.gru_variant,
                               dtype=args.dtype,
                               **{n: tuple(getattr(args, n)) for n in AXES if getattr(args, n)})
    return dataclasses.replace(base, grid=grid, budget=_budget(base.budget, args),
                               gemm=not args.no_gemm, bare_loop=base.bare_loop or args.bare_loop,
                               gemm_square=args.gemm_size or base.gemm_square,
                               optional_gpu=args.device == "auto")



def cmd_speed(args):
    from bench.core import records
    from bench.speed import runner
    plan = plan_from_args(args)
    out = records.out_dir(args.out, "speed")
    return runner.run_and_print(plan, out, show_progress=not args.quiet)
