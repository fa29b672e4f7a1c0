"""Frozen configuration dataclasses shared by every framework."""
from __future__ import annotations

from dataclasses import dataclass

CELLS = ("rnn", "lstm", "gru")
GRU_VARIANTS = ("reset_after", "reset_before")
ACTIVATIONS = ("tanh", "relu")  # the RNN cell's nonlinearity (LSTM and GRU are fixed: tanh)
IMPLS = ("scratch", "fast", "builtin")  # d2l's loop, the fast scratch, the framework's own
DTYPES = ("float32", "float64")
# Speed runs also time bfloat16 (GPUs' half-width format); parity and training stay in DTYPES.
# NumPy has no bfloat16: its parameters cross the boundary as float32 and the framework rounds.
SPEED_DTYPES = DTYPES + ("bfloat16",)


@dataclass(frozen=True)
class LayerSpec:
    """A (possibly deep, possibly bidirectional) recurrent layer.

    `gru_variant` only matters for `cell == "gru"`; see docs/contract.md for the two candidates.
    `activation` only for `cell == "rnn"`: `H' = act(X W_xh + H W_hh + b_h)`, tanh or relu.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    gru_variant: str = "reset_after"
    activation: str = "tanh"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        if self.gru_variant not in GRU_VARIANTS:
            raise ValueError(
                f"unknown GRU variant {self.gru_variant!r}: choose one of {', '.join(GRU_VARIANTS)}")
        check_activation(self.cell, self.activation)
        for name in ("input_size", "hidden_size", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def label(self) -> str:
        """Short readable id, e.g. `gru[reset_before]-L2-bi`."""
        cell = f"gru[{self.gru_variant}]" if self.cell == "gru" else self.cell
        cell = f"rnn[{self.activation}]" if self.activation != "tanh" else cell
        return f"{cell}-L{self.num_layers}-{'bi' if self.bidirectional else 'uni'}"


def check_choice(name: str, value: str, choices) -> str:
    """Return `value` if it is one of `choices`, else raise a ValueError that lists them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")
    return value


def check_activation(cell: str, activation: str) -> str:
    """`activation` if `cell` can have it: any of ACTIVATIONS for the RNN, tanh for LSTM/GRU."""
    check_choice("activation", activation, ACTIVATIONS)
    if cell != "rnn" and activation != "tanh":
        raise ValueError(f"activation {activation!r} is for the rnn cell only; "
                         f"{cell} keeps its tanh (drop --activation or use --cell rnn)")
    return activation


@dataclass(frozen=True)
class LMConfig:
    """A recurrent language model: one-hot or embedded ids -> layer stack -> dense over the vocab.

    `embed_size=None` means one-hot inputs (d2l's scratch models); otherwise a learnable
    `embedding (V, E)`. Bidirectional stacks are refused: a left-to-right LM must not see the future.
    """

    cell: str
    impl: str
    vocab_size: int
    hidden_size: int
    num_layers: int = 1
    gru_variant: str = "reset_after"
    embed_size: int = None
    activation: str = "tanh"

    def __post_init__(self):
        check_choice("impl", self.impl, IMPLS)
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {self.vocab_size}")
        if self.embed_size is not None and self.embed_size < 1:
            raise ValueError(f"embed_size must be positive or None (one-hot), got {self.embed_size}")
        self.layer_spec  # validates cell, sizes and variant

    @property
    def input_size(self) -> int:
        return self.vocab_size if self.embed_size is None else self.embed_size

    @property
    def layer_spec(self) -> LayerSpec:
        return LayerSpec(self.cell, self.input_size, self.hidden_size, self.num_layers, False,
                         self.gru_variant, self.activation)


OPTIMIZERS = ("sgd", "adam")
PARTITIONS = ("sequential", "random", "windows")


@dataclass(frozen=True)
class TrainConfig:
    """How a language model is trained.

    `partition`: d2l 0.17's `sequential` (state carried and detached across batches) or
    `random` (state reset every batch), or d2l 1.0's sliding `windows` with a validation split.
    `clip=None` turns gradient clipping off (to show the explosion d2l's exercise asks about).
    """

    optimizer: str = "sgd"
    lr: float = 1.0
    clip: float = 1.0
    epochs: int = 500
    batch_size: int = 32
    num_steps: int = 35
    partition: str = "sequential"
    num_train: int = 10000
    num_val: int = 5000
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    target_ppl: float = None

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("partition", self.partition, PARTITIONS)
        check_choice("dtype", self.dtype, DTYPES)
        for name in ("epochs", "batch_size", "num_steps", "num_train", "num_val"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be positive (or off), got {self.clip!r}")
