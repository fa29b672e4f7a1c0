"""The `report` verb: the report of one results directory, or several compared."""
from __future__ import annotations

from pathlib import Path


def add_report(sub):
    p = sub.add_parser("report", help="markdown and PNG report of a results directory (speed, "
                                      "parity, explain); of several: machines side by side")
    p.add_argument("directory", nargs="+", help="a results directory (holding speed.jsonl, "
                   "parity.json...); several: their speed records compared in one table per case")
    p.add_argument("--out", help="with several directories: where compare.md goes (default: a "
                                 "new rnnbench-results/compare-* directory)")
    p.set_defaults(func=cmd_report)


def cmd_report(args):
    from bench.core import records
    from bench.report import compare, run_report as report
    if len(args.directory) == 1 and not args.out:
        return report.main(Path(args.directory[0]))
    out = records.out_dir(args.out, "compare")
    return compare.main(args.directory, out)
