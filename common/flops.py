"""How many floating-point operations a language-model step does, and in which matrix products.

Only matrix products are counted (the rest is O(T*B*G*H) elementwise work against their
O(T*B*G*H*(I+H)); see `step_flops`). Nothing here imports a framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per cell: W_x* and W_h* are (., G*H)


@dataclass(frozen=True)
class Matmul:
    """`count` products of an `(M, K)` by a `(K, N)` matrix, each `2*M*K*N` flops."""

    name: str
    M: int
    K: int
    N: int
    count: int = 1

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.M, self.K, self.N)

    @property
    def flops(self) -> int:
        return 2 * self.M * self.K * self.N * self.count


def step_matmuls(cell: str, input_size: int, hidden: int, vocab: int, batch: int,
                 steps: int) -> List[Matmul]:
    """The matrix products of one forward pass of a one-layer LM, gates fused.

    - input projection, hoisted over all steps: `(T*B, I) x (I, G*H)` once
      (a scratch loop does the same work as T products `(B, I) x (I, H)` per gate);
    - recurrence: `(B, H) x (H, G*H)`, T times (serial: each needs the previous state);
    - output layer: `(T*B, H) x (H, V)` once.
    G is 1 for RNN, 3 for GRU, 4 for LSTM.
    """
    G, T, B = GATES[cell], steps, batch
    return [Matmul("input projection", T * B, input_size, G * hidden),
            Matmul("recurrence", B, hidden, G * hidden, count=T),
            Matmul("output layer", T * B, hidden, vocab)]


def forward_flops(matmuls: List[Matmul]) -> int:
    return sum(m.flops for m in matmuls)


def step_flops(cell: str, input_size: int, hidden: int, vocab: int, batch: int, steps: int,
               mode: str) -> int:
    """Floating-point operations of one LM step: `mode` "infer" (forward) or "train".

    Forward: `2*M*N*K` per `(M, K) x (K, N)` product of `step_matmuls`, summed:
    `2*T*B*(I*G*H + H*G*H + H*V)`.
    Train: forward plus backward, and the backward counts 2x the forward: each product
    `C = A B` needs `dA = dC B^T` and `dB = A^T dC`, each as costly as `C` itself. So train is
    3x forward. (Frameworks may skip `dA` for the one-hot input; the convention keeps one
    count for every implementation, so GFLOP/s compare like with like.)
    Not counted: gate nonlinearities, softmax and cross-entropy, clipping and the SGD update,
    all elementwise, together a few percent of the total at H >= 64.
    """
    fwd = forward_flops(step_matmuls(cell, input_size, hidden, vocab, batch, steps))
    if mode == "infer":
        return fwd
    if mode == "train":
        return 3 * fwd
    raise ValueError(f"unknown mode {mode!r}: choose train or infer")


def case_matmuls(case) -> List[Matmul]:
    """`step_matmuls` for a `SpeedCase` (one-hot inputs: I = V)."""
    return step_matmuls(case.cell, case.vocab, case.hidden, case.vocab, case.batch, case.steps)


def case_flops(case) -> int:
    """`step_flops` for a `SpeedCase` (one-hot inputs: I = V)."""
    return step_flops(case.cell, case.vocab, case.hidden, case.vocab, case.batch, case.steps,
                      case.mode)


def gemm_bound_seconds(case, rate_of) -> float:
    """The fastest the step's products could run: the sum over `case_matmuls` of flops over the
    rate (flop/s) `rate_of((M, K, N))` measured for that shape, times 3 when training."""
    factor = 3 if case.mode == "train" else 1
    return factor * sum(m.flops / rate_of(m.shape) for m in case_matmuls(case))
