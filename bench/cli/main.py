"""The `rnnbench` entry point: the parser (each verb's options live in its `bench.cli` module)
and `main`, which runs a verb and turns its failures into one line and an exit status."""
from __future__ import annotations

import argparse
import sys

from bench.core.signals import sigterm_as_interrupt
from common.errors import RnnbenchError, Terminated


def version() -> str:
    """The package's version: its installed metadata, else (a source checkout run in place,
    not installed) pyproject.toml's."""
    from importlib import metadata
    try:
        return metadata.version("rnnbench")
    except metadata.PackageNotFoundError:
        import re

        from bench.core.repo import ROOT
        pyproject = (ROOT / "pyproject.toml").read_text()
        return re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from bench.cli import exercises, explain, fastbook, info, jobs, lm, parity, report, speed
    from bench.cli import pages, translate
    parser = OneLineParser(prog="rnnbench", description="RNN/LSTM/GRU parity and speed across "
                           "PyTorch, MXNet Gluon and JAX. With no verb: `rnnbench run`.")
    parser.add_argument("--version", action="version", version=f"rnnbench {version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    for add in (info.add_info, info.add_data, parity.add_parity, jobs.add_run, jobs.add_gpu,
                lm.add_train, lm.add_generate, lm.add_quality, lm.add_trajectory,
                fastbook.add_ladder, translate.add_translate, speed.add_speed, report.add_report,
                explain.add_explain, exercises.add_exercises, pages.add_pages):
        add(sub)
    return parser


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

    from common import atomic
    out = getattr(args, "out", None) or getattr(args, "resume", None)
    homes = ([Path(out)] if out and Path(out).is_dir() else []) + [Path(tempfile.gettempdir())]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"rnnbench {version()} {' '.join(sys.argv)}\n{traceback.format_exc()}"
    for home in homes:
        try:
            path = home / f"rnnbench-error-{stamp}.log"
            atomic.write_text(path, text, overwrite=True)
            return str(path)
        except OSError:
            continue
    return "nowhere: no directory was writable"


def main(argv=None) -> int:
    """Run a verb. Bad input: one line on stderr, exit status 2; an unexpected error: one line
    and the file holding its traceback, exit status 3; interrupted: 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv or ["run"])
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
