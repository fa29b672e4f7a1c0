"""Progress bars: tqdm on a terminal, silent in logs, and silent where tqdm is not installed.

A GPU box with only torch or JAX (and no network to install tqdm) still runs every verb from the
source tree; progress is then simply not shown.
"""
from __future__ import annotations

import sys


class _Silent:
    """What the verbs use of a tqdm bar, doing nothing."""

    def __init__(self, iterable=None, **_):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable or ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix_str(self, s="", refresh=True):
        pass

    def close(self):
        pass


def tqdm(iterable=None, disable=False, **kwargs):
    """`tqdm.tqdm(iterable, **kwargs)` when stderr is a terminal and tqdm is installed."""
    if disable or not sys.stderr.isatty():
        return _Silent(iterable)
    try:
        from tqdm import tqdm as bar
    except ImportError:
        return _Silent(iterable)
    return bar(iterable, **kwargs)
