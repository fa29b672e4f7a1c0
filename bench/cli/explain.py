"""Options and action of the `explain` verb: why Gluon's concise LSTM trains faster than d2l's
scratch one, measured rung by rung in every framework (bench/explain/runner.py)."""
from __future__ import annotations

from bench.cli.argtypes import non_negative_int, positive




def add_explain(sub):
    from common.registry import backend_names
    from common.rungs import RUNG_ORDER
    p = sub.add_parser("explain", help="why is Gluon's concise LSTM faster than d2l's scratch "
                                       "one? the ladder from one to the other, measured")
    a = p.add_argument
    a("--quick", action="store_true", help="H=256 only, short budgets (a couple of minutes)")
    a("--hidden", nargs="+", type=positive(int), metavar="H",
      help="hidden sizes (default: 256 1024, d2l's and a large one)")
    a("--frameworks", nargs="+", choices=backend_names(), metavar="NAME",
      help=f"frameworks (default: every installed one of {', '.join(backend_names())})")
    a("--rungs", nargs="+", choices=RUNG_ORDER, metavar="RUNG",
      help=f"rungs to run (default: all of {', '.join(RUNG_ORDER)}; d2l and builtin anchor "
           "the gap)")
    a("--threads", type=positive(int), help="threads (pinned CPUs) per framework "
                                             "(default: every CPU this process may use)")
    a("--budget", type=positive(float), help="seconds of timed steps per rung (default 3)")
    a("--repeats", type=positive(int), help="at least this many timed steps (default 5)")
    a("--warmup", type=non_negative_int, help="untimed steps after the first (default 3)")
    a("--device", nargs="+", choices=("cpu", "gpu"), default=["cpu"], metavar="DEVICE",
      help="cpu and/or gpu (default: cpu)")
    a("--no-parity64", action="store_true", help="skip the float64 parity check of each rung")
    a("--out", help="directory (default: a new rnnbench-results/explain-* directory)")
    a("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_explain)


def config_from(args):
    """The `ExplainConfig` the options ask for (`--quick` first, then explicit options)."""
    from dataclasses import replace

    from bench.explain import runner as explain
    from common.registry import backend_names
    from common.rungs import RUNG_ORDER, ExplainConfig
    cfg = explain.quick_config(args.threads) if args.quick else ExplainConfig(
        threads=args.threads or explain.default_threads())
    devices = tuple(dict.fromkeys(args.device))
    given = {"hidden_sizes": args.hidden, "budget_s": args.budget, "min_repeats": args.repeats,
             "warmup": args.warmup,
             "frameworks": args.frameworks and tuple(dict.fromkeys(args.frameworks)),
             "rungs": args.rungs and tuple(r for r in RUNG_ORDER if r in args.rungs)}
    changes = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()
               if v is not None}
    cfg = replace(cfg, devices=devices, parity64=not args.no_parity64, **changes)
    if not set(cfg.frameworks) <= set(backend_names()):
        raise ValueError(f"unknown framework in {cfg.frameworks}")
    return cfg


def run_explain(args) -> int:
    from bench.core import records
    from bench.explain import runner as explain
    cfg = config_from(args)
    out = records.out_dir(args.out, "explain")
    return explain.main(cfg, out, quiet=args.quiet)
