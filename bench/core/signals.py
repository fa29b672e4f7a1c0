"""SIGTERM handled as Ctrl-C, and signals held off while results are written."""
from __future__ import annotations

import contextlib
import signal
import threading

from common.errors import Terminated


def raise_terminated(signum, frame):
    """A SIGTERM handler: raise `Terminated` (a KeyboardInterrupt) in the main thread."""
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def handled(handler, signums=(signal.SIGTERM,)):
    """`handler` for these signals during the block (only the main thread can set them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def sigterm_as_interrupt():
    """SIGTERM raises `Terminated` during the block, so Ctrl-C's handling covers it."""
    return handled(raise_terminated)


def held_off():
    """SIGINT and SIGTERM ignored during the block (a log being written is not lost)."""
    return handled(signal.SIG_IGN, (signal.SIGTERM, signal.SIGINT))
