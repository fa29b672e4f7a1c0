"""One training step of a `TorchLM`: forward, mean cross-entropy, backward, d2l's clipping,
then `torch.optim.SGD` or `torch.optim.Adam`.

The built-in layer trains the canonical model. `nn.RNN/LSTM/GRU` carry two bias vectors per
gate (docs/contract.md); canonical parameters put each bias on the input side and zero on the
recurrent side. Those recurrent-side blocks duplicate a canonical bias, so their gradients are
zeroed after every backward pass: they stay exactly zero under SGD and Adam, the norm that
clipping sees is the canonical one, and a built-in model follows the scratch model's trajectory.
(GRU's candidate block is no duplicate: it is `b_hn`, and it trains.) Without this the optimizer
would move both copies, the canonical bias twice as far, as plain `nn.LSTM` training does. The
scratch reset_before GRU's `b_hn` duplicates `b_h` the same way and is held the same way.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch

from common.config import OPTIMIZERS, check_choice
from common.params import Params, duplicate_bias_masks

from .arrays import from_numpy
from .convert import NATIVE_GATES, native_suffixes
from .lm import TorchLM, cross_entropy, detach_state

OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def clip_gradients(grads: List[torch.Tensor], theta: float) -> List[torch.Tensor]:
    """d2l's global-norm clipping, in place: if `sqrt(sum g**2) > theta`, `g *= theta / norm`.

    No host sync: the branch is a `torch.where`, and scaling by exactly 1.0 changes no bit.
    Unlike `clip_grad_norm_`, no 1e-6 is added to the norm.
    """
    norm = torch.sqrt(sum(torch.sum(g ** 2) for g in grads))
    scale = torch.where(norm > theta, theta / norm, torch.ones_like(norm))
    for g in grads:
        g.mul_(scale)
    return grads


def bias_masks(model: TorchLM) -> Dict[str, torch.Tensor]:
    """`common.params.duplicate_bias_masks` by torch's names (`bias_hh_l0`, ...) for the
    built-in, by canonical names for scratch, as tensors."""
    spec = model.cfg.layer_spec
    names = None if model.module is None else [f"bias_hh_{s}" for _, s in native_suffixes(spec)]
    masks = duplicate_bias_masks(spec, names, NATIVE_GATES[spec.cell])
    return {k: from_numpy(m, model.dtype, model.device) for k, m in masks.items()}


class Trainer:
    """Updates a `TorchLM` in place; `step(ids, targets, state) -> (loss, detached state)`."""

    def __init__(self, model: TorchLM, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0):
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.model, self.clip = model, clip
        leaves = model.leaves()
        self.leaves = list(leaves.values())
        self.masks = [(leaves[name], mask) for name, mask in bias_masks(model).items()]
        self.optimizer = OPTIMIZER_CLASSES[optimizer](self.leaves, lr=lr)

    def step(self, ids, targets, state=None):
        """`ids, targets: (B, T)`; `state`: the previous step's (None: zeros) -> `(loss, state)`."""
        loss, state = self.step_async(ids, targets, state)
        return loss.item(), state

    def step_async(self, ids, targets, state=None):
        """`step` without waiting for the result: `(loss as a 0-d tensor, detached state)`.

        No host sync inside, so a timing harness decides where the step ends (bench/speed).
        """
        model = self.model
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            logits, finals = model.forward(model.ids_in(ids), model.states_in(state))
            loss = cross_entropy(logits, model.ids_in(targets))
        loss.backward()
        for param, mask in self.masks:
            param.grad.mul_(mask)
        if self.clip is not None:
            clip_gradients([p.grad for p in self.leaves if p.grad is not None], self.clip)
        self.optimizer.step()
        return loss.detach(), detach_state(finals)

    def params(self) -> Params:
        """The model's current parameters in canonical form (NumPy)."""
        return self.model.canonical_params()


def make_trainer(model: TorchLM, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping)."""
    return Trainer(model, optimizer, lr, clip)
