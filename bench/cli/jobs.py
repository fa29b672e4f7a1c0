"""The `run` (main job) and `gpu` verbs: several verbs in one command."""
from __future__ import annotations

import argparse


def add_run(sub):
    p = sub.add_parser("run", help="the main job: info, data and the checks available, on "
                                   "generated data (no download)")
    p.add_argument("--out", default="rnnbench-results", help="results root directory")
    # The main job is always the quick subset; `--quick` is still accepted, and changes nothing.
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)


def add_gpu(sub):
    p = sub.add_parser("gpu", help="the GPU run in one command: environment, parity (TF32 off "
                                   "and on), the GPU speed grid, explain, report, one tarball")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                   help="gpu (default), or cpu to run the same steps on the CPU")
    p.add_argument("--quick", action="store_true", help="toy sizes and budgets (a check that "
                                                       "the command works, not a measurement)")
    p.add_argument("--out", default="rnnbench-results", help="results root directory")
    p.add_argument("--pack", help="where the tarball and a copy of report.md go (default: the "
                                  "results root)")
    p.set_defaults(func=cmd_gpu)


def cmd_run(args):
    from bench.jobs import main_job as mainjob
    return mainjob.main(out_root=args.out)


def cmd_gpu(args):
    from bench.jobs import gpu_job as gpujob
    return gpujob.main(args.device, out_root=args.out, quick=args.quick, pack_into=args.pack)
