"""The `exercises` verb: d2l's RNN exercises, each answered by an experiment."""
from __future__ import annotations


def add_exercises(sub) -> None:
    """The `rnnbench exercises` verb."""
    from bench.exercises.runner import BACKENDS
    p = sub.add_parser("exercises", help="every exercise of d2l's RNN chapters, answered by an "
                                         "experiment in every framework; writes exercises.md")
    p.add_argument("--quick", action="store_true", help="small sizes: all sixteen in minutes")
    p.add_argument("--only", type=int, nargs="+", metavar="N", help="run only these exercises")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, metavar="NAME",
                   help=f"frameworks (default: {' '.join(BACKENDS)})")
    p.add_argument("--data", help="directory holding the corpora (timemachine.txt, "
                                  "war_of_the_worlds.txt, tinyshakespeare.txt); default "
                                  "$RNNBENCH_DATA, else downloads where an address is known")
    p.add_argument("--out", help="output directory (default rnnbench-results/exercises[-quick])")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--rewrite", action="store_true",
                   help="run nothing: write exercises.md again from the records in --out")
    p.set_defaults(func=run_exercises)


def run_exercises(a) -> int:
    from bench.exercises.runner import main
    return main(a.quick, a.only, a.out, a.backends, a.data, not a.quiet, a.rewrite)
