"""What `rnnbench speed` measures: one frozen `SpeedCase` per point of the grid, and the budget.

A case is one backend x impl x cell x mode (`train`: forward, cross-entropy over the vocabulary,
backward, clipping, SGD; `infer`: forward only) at one size (hidden H, batch B, steps T,
vocabulary V, one-hot inputs as in d2l), dtype, device and thread count. Nothing here imports
a framework.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .config import CELLS, GRU_VARIANTS, IMPLS, SPEED_DTYPES, LMConfig, check_choice

MODES = ("train", "infer")
DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class SpeedCase:
    """One measurement of the grid; `threads`: the CPU threads every framework is pinned to."""

    backend: str
    impl: str
    cell: str
    mode: str
    hidden: int
    batch: int
    steps: int
    vocab: int
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 1
    gru_variant: str = "reset_after"

    def __post_init__(self):
        check_choice("impl", self.impl, IMPLS)
        check_choice("cell", self.cell, CELLS)
        check_choice("mode", self.mode, MODES)
        check_choice("dtype", self.dtype, SPEED_DTYPES)
        check_choice("device", self.device, DEVICES)
        check_choice("GRU variant", self.gru_variant, GRU_VARIANTS)
        for name in ("hidden", "batch", "steps", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.vocab < 2:
            raise ValueError(f"vocab must be at least 2, got {self.vocab!r}")

    @property
    def key(self) -> str:
        """A stable id: the resume key of its record, e.g. `torch/builtin/lstm/train/H256...`."""
        cell = self.cell if self.cell != "gru" or self.gru_variant == "reset_after" \
            else f"gru[{self.gru_variant}]"
        return (f"{self.backend}/{self.impl}/{cell}/{self.mode}/H{self.hidden}-B{self.batch}"
                f"-T{self.steps}-V{self.vocab}/{self.dtype}/{self.device}/t{self.threads}")

    @property
    def tokens(self) -> int:
        """Tokens one timed call processes: batch x steps."""
        return self.batch * self.steps

    def lm_config(self) -> LMConfig:
        """The one-layer, one-hot language model the step trains (d2l's)."""
        return LMConfig(self.cell, self.impl, self.vocab, self.hidden, 1, self.gru_variant)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """How long to measure: `warmup` untimed calls after the first (compile) call, then repeats
    until both `min_repeats` and `seconds` are reached, at most `max_repeats`. The default
    second per case keeps the full default grid (468 cases) under half an hour on 2 cores."""

    warmup: int = 3
    min_repeats: int = 5
    seconds: float = 1.0
    max_repeats: int = 1000

    def __post_init__(self):
        if self.warmup < 0 or self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            raise ValueError(f"bad budget {self}: need warmup >= 0 and "
                             "1 <= min_repeats <= max_repeats")
        if not self.seconds >= 0:
            raise ValueError(f"budget seconds must be >= 0, got {self.seconds!r}")

    def measure_kwargs(self) -> Dict[str, float]:
        """Keyword arguments for `bench.core.timing.measure`."""
        return {"warmup": self.warmup, "min_repeats": self.min_repeats,
                "budget_s": self.seconds, "max_repeats": self.max_repeats}


def speed_data(case: SpeedCase, seed: int = 0):
    """The same seeded token ids for every framework: `(ids, targets)`, each `(B, T)` int64.

    `targets` are `ids` shifted by one token, as a language model's batch is.
    """
    rng = np.random.default_rng([seed, case.vocab, case.batch, case.steps])
    tokens = rng.integers(0, case.vocab, size=(case.batch, case.steps + 1), dtype=np.int64)
    return tokens[:, :-1].copy(), tokens[:, 1:].copy()


@dataclass
class Step:
    """A built step, ready to time: `fn()` runs one step and returns what `sync` must wait for.

    `sync(result)` is the framework's barrier (`torch.cuda.synchronize`, `mx.nd.waitall`,
    `jax.block_until_ready`); `code_path` names the code that ran, for the record.
    """

    fn: Callable[[], object]
    sync: Callable[[object], object]
    code_path: str
    device_name: Optional[str] = None


Size = Tuple[int, int, int, int]  # (hidden, batch, steps, vocab)


@dataclass(frozen=True)
class SpeedGrid:
    """The product of backends x sizes x cells x impls x modes x devices that `rnnbench speed`
    measures; `cases()` lists it framework by framework, so one subprocess serves each."""

    backends: Tuple[str, ...]
    impls: Tuple[str, ...]
    cells: Tuple[str, ...]
    modes: Tuple[str, ...]
    sizes: Tuple[Size, ...]
    devices: Tuple[str, ...] = ("cpu",)
    threads: int = 1
    dtype: str = "float32"
    gru_variant: str = "reset_after"

    def cases(self) -> List[SpeedCase]:
        out = []
        for backend, device, (H, B, T, V), cell, impl, mode in itertools.product(
                self.backends, self.devices, self.sizes, self.cells, self.impls, self.modes):
            out.append(SpeedCase(backend, impl, cell, mode, H, B, T, V, self.dtype, device,
                                 self.threads, self.gru_variant))
        return out
