"""argparse types whose refusals say what would be accepted (one line, exit status 2): the one
place every verb takes its argument types from."""
from __future__ import annotations

import argparse
import math


def _number(text, convert, accept, refused: str, unparsable: str = ""):
    """`convert(text)` where `accept` takes it; else an ArgumentTypeError "<refused>, got ..."
    (or "<unparsable>, got ..." when `convert` cannot read it)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{unparsable or refused}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"{refused}, got {text!r}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "expected a positive integer")


def positive_float(text):
    """A finite number > 0 (`inf` and `nan` are refused: no run can use them)."""
    return _number(text, float, lambda v: 0 < v < math.inf, "expected a positive finite number",
                   "expected a positive number")


def non_negative_seconds(text):
    """A finite number of seconds >= 0."""
    return _number(text, float, lambda v: 0 <= v < math.inf,
                   "expected a finite non-negative number", "expected a number of seconds")


def non_negative_int(text):
    return _number(text, int, lambda v: v >= 0, "expected an integer >= 0")


def positive(kind):
    """A finite `kind` (int or float) > 0, its refusal naming the kind."""
    def parse(text):
        return _number(text, kind, lambda v: 0 < v < math.inf,
                       f"expected a positive {kind.__name__}")
    return parse


def fraction_below_one(text):
    """A number in [0, 1) (a dropout rate)."""
    return _number(text, float, lambda v: 0 <= v < 1, "expected a number in [0, 1)")
