"""The `parity` verb: do all implementations compute the same thing?"""
from __future__ import annotations


def add_parity(sub):
    from common.config import DTYPES
    from common.registry import backend_names
    p = sub.add_parser("parity", help="do all implementations compute the same thing?")
    p.add_argument("--quick", action="store_true", help="1-layer uni and 2-layer bi cases only")
    p.add_argument("--backends", nargs="+", choices=backend_names(), metavar="NAME",
                   help=f"backends to compare (default: all of {', '.join(backend_names())})")
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), metavar="DTYPE",
                   help="float64 and/or float32 (default: both)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--tf32", action="store_true", help="GPU: float32 products in TF32 (Ampere "
                   "and later), to see the error it adds; its pairs are measured, not judged")
    p.add_argument("--out", help="directory for parity.json and parity.md "
                                 "(default: a new rnnbench-results/parity-* directory)")
    p.set_defaults(func=cmd_parity)


def cmd_parity(args):
    from bench.core import records
    from bench.parity import runner
    from common.precision import allow_tf32
    if args.tf32:
        allow_tf32()   # before any framework is imported
    out = records.out_dir(args.out, "parity")
    return runner.main(args.quick, args.backends, args.dtypes, args.device, out)
