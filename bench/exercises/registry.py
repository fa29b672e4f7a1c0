"""The exercises' registry: what an experiment returns (`Result`) and the decorator that
registers one (`exercise`), imported by each group of experiments and by the runner."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List

from bench.core import status as S


@dataclass
class Result:
    """What one experiment measured: rows (one per framework and setting), an answer built from
    them, plots (file names under the output directory) and any further records."""
    rows: List[dict]
    answer: str
    plots: List[str] = field(default_factory=list)
    records: dict = field(default_factory=dict)
    status: str = S.RAN      # RAN | RUN_ERROR | NOT_SUPPORTED_HERE (`bench.core.status`)
    seconds: float = 0.0


@dataclass(frozen=True)
class Exercise:
    number: int
    section: str
    question: str            # in our own words
    run: Callable


REGISTRY: Dict[int, Exercise] = {}


def exercise(number: int, section: str, question: str):
    """Register `fn(ctx) -> Result` as the experiment of suite exercise `number`."""
    def register(fn):
        REGISTRY[number] = Exercise(number, section, question, fn)
        return fn
    return register
