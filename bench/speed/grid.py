"""The named grids of `rnnbench speed`: d2l's sizes, the scaling sweeps, the main job's quick one.

d2l's character LM: V = 28 one-hot tokens, batch B = 32, T = 35 steps, hidden H = 256 (and the
1024 of the concise chapters' exercises). Each sweep varies one of H, T, B around H = 256,
B = 32, T = 35 with the others fixed; the report draws them as scaling curves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from common.config import CELLS, IMPLS
from common.registry import backend_names
from common.speedcase import MODES, Budget, Size, SpeedCase, SpeedGrid

D2L = {"hidden": 256, "batch": 32, "steps": 35, "vocab": 28}
D2L_SIZES: Tuple[Size, ...] = ((256, 32, 35, 28), (1024, 32, 35, 28))
SWEEPS: Dict[str, Tuple[int, ...]] = {
    "hidden": (64, 128, 256, 512, 1024),
    "steps": (8, 16, 35, 70, 140),
    "batch": (8, 16, 32, 64, 128),
}
GRIDS = ("full", "d2l", "sweeps")

QUICK_CELLS = ("lstm", "gru")
QUICK_BUDGET = Budget(warmup=2, min_repeats=3, seconds=0.3)
QUICK_GEMM_BUDGET = Budget(warmup=1, min_repeats=3, seconds=0.1)
DEFAULT_GEMM_BUDGET = Budget(warmup=2, min_repeats=5, seconds=0.3)
QUICK_GEMM_SQUARE, DEFAULT_GEMM_SQUARE = 1024, 2048


def sweep_sizes(axis: str) -> List[Size]:
    """The sizes of one sweep, the other axes at d2l's values."""
    sizes = []
    for value in SWEEPS[axis]:
        point = {**D2L, axis: value}
        sizes.append((point["hidden"], point["batch"], point["steps"], point["vocab"]))
    return sizes


def named_sizes(grid: str) -> Tuple[Size, ...]:
    """`d2l`: d2l's two sizes; `sweeps`: the H, T and B sweeps; `full`: both."""
    sizes = list(D2L_SIZES) if grid in ("full", "d2l") else []
    if grid in ("full", "sweeps"):
        for axis in SWEEPS:
            sizes += sweep_sizes(axis)
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}: choose one of {', '.join(GRIDS)}")
    return tuple(dict.fromkeys(sizes))  # first occurrence order, no repeats


def product_sizes(hidden=None, batch=None, steps=None, vocab=None) -> Tuple[Size, ...]:
    """Explicit sizes: the product of the values given, d2l's value for an axis left out."""
    axes = [hidden or [D2L["hidden"]], batch or [D2L["batch"]], steps or [D2L["steps"]],
            vocab or [D2L["vocab"]]]
    return tuple((H, B, T, V) for H in axes[0] for B in axes[1] for T in axes[2] for V in axes[3])


def sweep_axis(case: SpeedCase) -> List[str]:
    """The sweeps a case's size belongs to (for the scaling charts)."""
    point = {"hidden": case.hidden, "batch": case.batch, "steps": case.steps,
             "vocab": case.vocab}
    return [axis for axis in SWEEPS
            if all(point[a] == D2L[a] for a in D2L if a != axis) and point[axis] in SWEEPS[axis]]


@dataclass(frozen=True)
class SpeedPlan:
    """Everything a `rnnbench speed` run needs: the grid, budgets, GEMM size, extras."""

    grid: SpeedGrid
    budget: Budget = Budget()
    gemm_budget: Budget = DEFAULT_GEMM_BUDGET
    gemm_square: int = DEFAULT_GEMM_SQUARE
    gemm: bool = True
    optional_gpu: bool = False  # GPU cases of a framework that sees no GPU: skipped, said so
    bare_loop: bool = False
    seed: int = 0

    def bare_loop_cases(self) -> List[SpeedCase]:
        """The cases the hand-written PyTorch loop is compared on: torch built-in, CPU, LSTM
        (else the grid's first cell) train, at each of the grid's sizes."""
        if not self.bare_loop or "torch" not in self.grid.backends:
            return []
        cell = "lstm" if "lstm" in self.grid.cells else self.grid.cells[0]
        return [c for c in self.grid.cases() if c.backend == "torch" and c.impl == "builtin"
                and c.cell == cell and c.mode == "train" and c.device == "cpu"][:2]


def quick_plan(threads: int, devices=("cpu",), optional_gpu: bool = False) -> SpeedPlan:
    """The main job's grid: H = 256 at d2l's other sizes, LSTM and GRU, every backend and impl,
    train and infer, short budgets, plus one bare-loop comparison."""
    grid = SpeedGrid(backend_names(), IMPLS, QUICK_CELLS, MODES, D2L_SIZES[:1], tuple(devices),
                     threads)
    return SpeedPlan(grid, QUICK_BUDGET, QUICK_GEMM_BUDGET, QUICK_GEMM_SQUARE,
                     optional_gpu=optional_gpu, bare_loop=True)


ALL = {"backends": backend_names(), "impls": IMPLS, "cells": CELLS, "modes": MODES}
