"""The one trainer of the PyTorch backend: every experiment's training step is this one, with the
experiment's loss.

A step: zero the gradients, the loss (the experiment's `loss(model, *batch) -> (loss reported,
loss differentiated, aux)`), backward, the masks (gradients of duplicated biases held at zero),
d2l's global-norm clipping, the optimizer (`torch.optim.SGD`, `Adam`, or fastai's AdamW), the
schedule. The built-in layers carry two bias vectors per gate (docs/contract.md); canonical
parameters put each bias on the input side and zero on the recurrent side. Those recurrent-side
blocks duplicate a canonical bias, so the experiment passes masks that zero their gradients
after every backward pass: they stay exactly zero under SGD and Adam, the norm that clipping
sees is the canonical one, and a built-in model follows the scratch model's trajectory. (GRU's
candidate block is no duplicate: it is `b_hn`, and it trains.) The scratch reset_before GRU's
`b_hn` duplicates `b_h` the same way and is held the same way.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from common.config import OPTIMIZERS, check_choice
from common.params import Params

from .model import Model

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


def make_optimizer(model: Model, optimizer: str = "sgd", lr: float = 1.0):
    """`torch.optim.SGD` (no momentum) or `torch.optim.Adam` (its defaults) over every leaf."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    return OPTIMIZER_CLASSES[optimizer](list(model.leaves().values()), lr=lr)


class Trainer:
    """Updates a `Model` in place: `step(*batch) -> (loss, aux)`, where `aux` is what the loss
    returns beside it (the language model's detached final states, say)."""

    def __init__(self, model: Model, loss: Callable, optimizer,
                 clip: Optional[float] = None, masks: Optional[Dict[str, np.ndarray]] = None,
                 scheduler=None, evaluate: Optional[Callable] = None):
        self.model, self.loss, self.optimizer, self.clip = model, loss, optimizer, clip
        self.scheduler, self.evaluator = scheduler, evaluate
        leaves = model.leaves()
        self.leaves = list(leaves.values())
        self.masks = [(leaves[name], model.array(mask)) for name, mask in (masks or {}).items()]

    @property
    def code_path(self) -> str:
        return self.model.code_path

    def step(self, *batch):
        """One update on `batch` -> `(loss as a float, aux)`."""
        loss, aux = self.step_async(*batch)
        return loss.item(), aux

    def step_async(self, *batch):
        """`step` without waiting for the result: `(loss as a 0-d tensor, aux)`.

        No host sync inside, so a timing harness decides where the step ends (bench/speed).
        """
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss, total, aux = self.loss(self.model, *batch)
        total.backward()
        for param, mask in self.masks:
            param.grad.mul_(mask)
        if self.clip is not None:
            clip_gradients([p.grad for p in self.leaves if p.grad is not None], self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach(), aux

    def evaluate(self, *batch):
        """The experiment's evaluation of the current parameters (no update, no gradients)."""
        with torch.no_grad():
            return self.evaluator(self.model, *batch)

    def params(self) -> Params:
        """The model's current parameters in canonical form (NumPy)."""
        return self.model.canonical_params()
