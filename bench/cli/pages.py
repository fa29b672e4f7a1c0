"""The `pages` verb: the result pages under docs/ and the README's headlines, from the records."""
from __future__ import annotations

from pathlib import Path


def add_pages(sub) -> None:
    p = sub.add_parser("pages", help="write docs/*.md and the README's headlines from the "
                                     "records under docs/results")
    p.add_argument("--root", default=".", help="the repository root (default: .)")
    p.add_argument("--check", action="store_true", help="only say which pages are stale")
    p.set_defaults(func=cmd_pages)


def cmd_pages(args) -> int:
    from bench.pages import runner
    return runner.main(Path(args.root).resolve(), args.check)
