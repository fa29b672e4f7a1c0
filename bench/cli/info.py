"""The `info` and `data` verbs: the installed frameworks and devices, a corpus's statistics."""
from __future__ import annotations

from bench.cli.argtypes import positive_int


def add_info(sub):
    p = sub.add_parser("info", help="installed frameworks, versions, devices, threads")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=cmd_info)


def add_data(sub):
    from common.corpora import CORPORA
    p = sub.add_parser("data", help="statistics of a corpus")
    p.add_argument("name", choices=CORPORA, metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    p.add_argument("--path", help="read the corpus from this file or directory instead of "
                                  "downloading it (human_numbers: generated when omitted)")
    p.add_argument("--token", choices=("char", "word", "src", "tgt"),
                   help="char or word tokens; for fra_eng src (English) or tgt (French)")
    p.add_argument("--top", type=positive_int, default=10, help="how many frequent tokens to show")
    p.set_defaults(func=cmd_data)


def cmd_info(args):
    from bench.core import info
    return info.main(as_json=args.json)


def cmd_data(args):
    from bench.core import datastats
    return datastats.main(args.name, path=args.path, token=args.token, top=args.top)
