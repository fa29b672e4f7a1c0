"""The one trainer of the MXNet backend: every experiment's training step is this one, with the
experiment's loss, and Gluon's `Trainer` with its 'sgd' or 'adam' optimizer (or fastai's Adam,
ladder.py) inside.

A step: the loss under `autograd.record()` (the experiment's `loss(model, *batch) -> (loss
reported, loss differentiated, aux)`), backward, the masks (gradients of duplicated biases held
at zero), d2l's global-norm clipping, the optimizer, the schedule (if any; fastai's lives inside
its optimizer). The built-in layer trains the canonical model. Gluon carries two bias vectors
per gate (docs/contract.md); canonical parameters put each bias on the input side and zero on
the recurrent side. Those recurrent-side blocks duplicate a canonical bias, so the experiment
passes masks that zero their gradients after every backward pass: they stay exactly zero under
SGD and Adam, the norm that clipping sees is the canonical one, and a built-in model follows the
scratch model's trajectory. (GRU's candidate block is no duplicate: it is `b_hn`, and it
trains.) Without this the optimizer would move both copies, the canonical bias twice as far, as
plain `gluon.rnn.LSTM` training does. The scratch reset_before GRU's `b_hn` duplicates `b_h`
the same way and is held the same way.

`optimizer="sgd"`: `p -= lr * g` (Gluon's SGD: no momentum, no weight decay).
`optimizer="adam"`: Gluon's Adam with its defaults (beta1 0.9, beta2 0.999, eps 1e-8). MXNet
folds the bias correction into the step size, `lr_t = lr * sqrt(1 - beta2**t) / (1 -
beta1**t)`, `p -= lr_t * m / (sqrt(v) + eps)`, which equals the paper's (and torch's, optax's)
`lr * m_hat / (sqrt(v_hat) + eps)` only with eps replaced by `eps / sqrt(1 - beta2**t)`: the
same up to that epsilon. (MXNet's own docstring swaps beta1 and beta2 in this formula; its
code reads as above.)

MXNet hands `lr` (for Adam `lr_t`), `beta1`, `beta2` and `eps` to its update kernels as C
`float`s, so in float64 they act rounded to float32: exact for `lr = 1.0` (d2l's SGD setting),
off by about 1e-8 relative for `lr = 0.7`, and Adam's `1 - beta2` by 1.3e-5.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

from common.config import OPTIMIZERS, check_choice
from common.params import Params

from ._mx import mx
from .model import Model

nd = mx.nd


def clip_gradients(grads: List, theta: float) -> List:
    """d2l's `grad_clipping`, in place: if `norm = sqrt(sum g**2) > theta`, `g *= theta / norm`.

    No host sync: the branch is an `nd.where`, and scaling by exactly 1.0 changes no bit.
    No 1e-6 is added to the norm (unlike `torch.nn.utils.clip_grad_norm_`). Each `sum(g**2)` is
    a vector dot product: the same value up to rounding, and 5x faster than `nd.sum` here.
    """
    squares = [nd.dot(v, v) for v in (g.reshape((-1,)) for g in grads)]
    norm = nd.sqrt(nd.add_n(*squares))
    scale = nd.where(norm > theta, theta / norm, nd.ones_like(norm))
    for g in grads:
        nd.broadcast_mul(g, scale, out=g)
    return grads


def make_optimizer(model: Model, optimizer: str = "sgd", lr: float = 1.0):
    """Gluon's `Trainer` with its 'sgd' (no momentum) or 'adam' (its defaults) optimizer over
    every leaf (one context, so no kvstore)."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    return mx.gluon.Trainer(list(model.leaves().values()), optimizer, {"learning_rate": lr})


class Trainer:
    """Updates a `Model` in place: `step(*batch) -> (loss, aux)`, where `aux` is what the loss
    returns beside it (the language model's detached final states, say). `optimizer`: anything
    with Gluon's `step(batch_size)`; the loss is already a mean, hence `step(1)`."""

    def __init__(self, model: Model, loss: Callable, optimizer,
                 clip: Optional[float] = None, masks: Optional[Dict[str, np.ndarray]] = None,
                 scheduler=None, evaluate: Optional[Callable] = None):
        self.model, self.loss, self.optimizer, self.clip = model, loss, optimizer, clip
        self.scheduler, self.evaluator = scheduler, evaluate
        leaves = model.leaves()
        self.grads = [p.grad(model.device) for p in leaves.values()]
        self.masks = [(leaves[name].grad(model.device), model.array(mask))
                      for name, mask in (masks or {}).items()]

    @property
    def code_path(self) -> str:
        return self.model.code_path

    def step(self, *batch):
        """One update on `batch` -> `(loss as a float, aux)`."""
        loss, aux = self.step_async(*batch)
        return float(loss.asscalar()), aux

    def step_async(self, *batch):
        """`step` without waiting for the result: `(loss as an nd scalar, aux)`.

        No host sync inside (MXNet's engine runs on); a timing harness calls `mx.nd.waitall()`.
        A loss differentiated of None: the loss has left the gradients in the buffers itself
        (the hand_vjp rung's hand-written backward, rungs.py).
        """
        with mx.autograd.record():
            loss, total, aux = self.loss(self.model, *batch)
        if total is not None:
            total.backward()
        for grad, mask in self.masks:
            grad *= mask
        if self.clip is not None:
            clip_gradients(self.grads, self.clip)
        self.optimizer.step(1)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss, aux

    def evaluate(self, *batch):
        """The experiment's evaluation of the current parameters (no update, not recording)."""
        with mx.autograd.pause():
            return self.evaluator(self.model, *batch)

    def params(self) -> Params:
        """The model's current parameters in canonical form (NumPy)."""
        return self.model.canonical_params()
