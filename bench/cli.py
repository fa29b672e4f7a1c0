"""The `rnnbench` command line. Each verb parses its options here and calls one module."""
from __future__ import annotations

import argparse
import sys

from bench.argtypes import positive_int as _positive_int
from bench.signals import sigterm_as_interrupt
from common.errors import RnnbenchError, Terminated

VERSION = "0.1.0"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _add_info(sub):
    p = sub.add_parser("info", help="installed frameworks, versions, devices, threads")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=_cmd_info)


def _add_data(sub):
    from common.corpora import CORPORA
    p = sub.add_parser("data", help="statistics of a corpus")
    p.add_argument("name", choices=CORPORA, metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    p.add_argument("--path", help="read the corpus from this file or directory instead of "
                                  "downloading it (human_numbers: generated when omitted)")
    p.add_argument("--token", choices=("char", "word", "src", "tgt"),
                   help="char or word tokens; for fra_eng src (English) or tgt (French)")
    p.add_argument("--top", type=_positive_int, default=10, help="how many frequent tokens to show")
    p.set_defaults(func=_cmd_data)


def _add_run(sub):
    p = sub.add_parser("run", help="the main job: info, data and the checks available, on "
                                   "generated data (no download)")
    p.add_argument("--out", default="rnnbench-results", help="results root directory")
    p.add_argument("--quick", action="store_true", help="the quick subset (the default job)")
    p.set_defaults(func=_cmd_run)


def _add_parity(sub):
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
    p.set_defaults(func=_cmd_parity)


def _add_gpu(sub):
    p = sub.add_parser("gpu", help="the GPU run in one command: environment, parity (TF32 off "
                                   "and on), the GPU speed grid, explain, report, one tarball")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                   help="gpu (default), or cpu to run the same steps on the CPU")
    p.add_argument("--quick", action="store_true", help="toy sizes and budgets (a check that "
                                                       "the command works, not a measurement)")
    p.add_argument("--out", default="rnnbench-results", help="results root directory")
    p.add_argument("--pack", help="where the tarball and a copy of report.md go (default: the "
                                  "results root)")
    p.set_defaults(func=_cmd_gpu)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rnnbench", description="RNN/LSTM/GRU parity and speed across "
                           "PyTorch, MXNet Gluon and JAX. With no verb: `rnnbench run --quick`.")
    parser.add_argument("--version", action="version", version=f"rnnbench {VERSION}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    for add in (_add_info, _add_data, _add_parity, _add_run, _add_gpu):
        add(sub)
    from bench import train_cli
    train_cli.add_train(sub, _positive_int)
    train_cli.add_generate(sub, _positive_int)
    train_cli.add_quality(sub)
    train_cli.add_trajectory(sub)
    from bench import ladder_cli; ladder_cli.add_ladder(sub)  # noqa: E702
    from bench.translate_cli import add_translate; add_translate(sub)  # noqa: E702
    from bench import speed_cli
    speed_cli.add_speed(sub, _positive_int)
    speed_cli.add_report(sub)
    from bench.explain_cli import add_explain; add_explain(sub)  # noqa: E702
    from bench.exercises import add_exercises; add_exercises(sub)  # noqa: E702
    from bench.pages import add_pages; add_pages(sub)  # noqa: E702
    return parser


def _cmd_info(args):
    from bench import info
    return info.main(as_json=args.json)


def _cmd_data(args):
    from bench import datastats
    return datastats.main(args.name, path=args.path, token=args.token, top=args.top)


def _cmd_parity(args):
    from pathlib import Path

    from bench import parity_report, records
    from common.precision import allow_tf32
    if args.tf32:
        allow_tf32()   # before any framework is imported
    out = Path(args.out) if args.out else records.new_run_dir(prefix="parity")
    return parity_report.main(args.quick, args.backends, args.dtypes, args.device, out)


def _cmd_run(args):
    from bench import mainjob
    return mainjob.main(out_root=args.out, quick=True)


def _cmd_gpu(args):
    from bench import gpujob
    return gpujob.main(args.device, out_root=args.out, quick=args.quick, pack_into=args.pack)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_out(args) -> None:
    """Before any verb works: its --out may be new or a directory, never an existing file."""
    from pathlib import Path
    out = getattr(args, "out", None)
    if out and Path(out).exists() and not Path(out).is_dir():
        raise RnnbenchError(f"--out {out} is a file, not a directory: choose another --out")


def _traceback_log(args) -> str:
    """Write the current exception's traceback into the run directory (when the verb has one
    that exists) or the temporary directory; return the file's path."""
    import datetime
    import tempfile
    import traceback
    from pathlib import Path
    out = getattr(args, "out", None) or getattr(args, "resume", None)
    homes = ([Path(out)] if out and Path(out).is_dir() else []) + [Path(tempfile.gettempdir())]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"rnnbench {VERSION} {' '.join(sys.argv)}\n{traceback.format_exc()}"
    for home in homes:
        try:
            path = home / f"rnnbench-error-{stamp}.log"
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "nowhere: no directory was writable"


def main(argv=None) -> int:
    """Run a verb. Bad input: one line on stderr, exit status 2; an unexpected error: one line
    and the file holding its traceback, exit status 3; interrupted: 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv or ["run", "--quick"])
    try:
        _check_out(args)
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except (RnnbenchError, ValueError, OSError) as exc:
        sys.stderr.write(f"rnnbench: error: {_one_line(exc)}\n")
        return 2
    except MemoryError:
        sys.stderr.write("rnnbench: error: out of memory: choose smaller sizes (--hidden, "
                         "--batch-size, --num-steps, ...)\n")
        return 2
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        sys.stderr.write(f"rnnbench: {'terminated (SIGTERM)' if terminated else 'interrupted'}\n")
        return 143 if terminated else 130
    except Exception as exc:  # a bug: one line here, the traceback in a file for the report
        where = _traceback_log(args)
        sys.stderr.write(f"rnnbench: internal error: {type(exc).__name__}: {_one_line(exc)} "
                         f"(full traceback in {where}; please include it in a bug report)\n")
        return 3


if __name__ == "__main__":
    sys.exit(main())
