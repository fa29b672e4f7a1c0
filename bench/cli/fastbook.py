"""Options and action of the `ladder` verb: fastbook chapter 12's LMModel1-7 on Human Numbers."""
from __future__ import annotations

from bench.cli.argtypes import positive_int


def add_ladder(sub):
    from common.config import DTYPES
    from common.ladder import MODELS
    from common.registry import backend_names
    p = sub.add_parser("ladder", help="fastbook ch. 12's seven language models on Human Numbers "
                                      "in every framework, beside the book's figures")
    a = p.add_argument
    a("--backends", nargs="+", choices=backend_names(), metavar="NAME",
      help=f"frameworks to run (default: every installed one of {', '.join(backend_names())})")
    a("--models", nargs="+", type=int, choices=sorted(MODELS), default=sorted(MODELS),
      metavar="N", help="LMModel numbers, 1 to 7 (default: all)")
    a("--epochs", type=positive_int, help="override every model's epochs (for a quick look)")
    a("--seed", type=int, default=0)
    a("--dtype", choices=DTYPES, default="float32",
      help="parameters, states and optimizer state (default float32, as fastbook)")
    a("--device", choices=("cpu", "gpu"), default="cpu")
    a("--out", help="directory (default: a new rnnbench-results/ladder-* directory)")
    a("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_ladder)


def run_ladder(args) -> int:
    from bench.core import records
    from bench.fastbook import runner as ladder
    from common.registry import chosen_backends
    backends = chosen_backends(args.backends, "ladder")
    out = records.out_dir(args.out, "ladder")
    return ladder.main(backends, args.models, args.epochs, args.seed, args.device, out,
                       quiet=args.quiet, dtype=args.dtype)
