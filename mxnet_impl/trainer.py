"""One training step of an `MXNetLM`: forward, mean cross-entropy, backward, d2l's clipping,
then Gluon's `Trainer` with its 'sgd' or 'adam' optimizer.

The built-in layer trains the canonical model. Gluon carries two bias vectors per gate
(docs/contract.md); canonical parameters put each bias on the input side and zero on the recurrent
side. Those recurrent-side blocks duplicate a canonical bias, so their gradients are zeroed
after every backward pass: they stay exactly zero under SGD and Adam, the norm that clipping
sees is the canonical one, and a built-in model follows the scratch model's trajectory. (GRU's
candidate block is no duplicate: it is `b_hn`, and it trains.) Without this the optimizer would
move both copies, the canonical bias twice as far, as plain `gluon.rnn.LSTM` training does.
The scratch reset_before GRU's `b_hn` duplicates `b_h` the same way and is held the same way.
"""
from __future__ import annotations

from typing import Dict, List, Optional


from common.config import OPTIMIZERS, check_choice
from common.params import Params, duplicate_bias_masks, prefixes

from ._mx import mx
from .convert import NATIVE_GATES, native_prefix
from .arrays import from_numpy
from .lm import MXNetLM, detach_state, loss_and_backward

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


def bias_masks(model: MXNetLM) -> Dict[str, object]:
    """`common.params.duplicate_bias_masks` by Gluon's names (`l0_h2h_bias`, ...) for the
    built-in, by canonical names for scratch, as nd arrays."""
    spec = model.cfg.layer_spec
    names = None if model.net is None else [native_prefix(p) + "h2h_bias" for p in prefixes(spec)]
    masks = duplicate_bias_masks(spec, names, NATIVE_GATES[spec.cell])
    return {k: from_numpy(m, model.dtype, model.ctx) for k, m in masks.items()}


class Trainer:
    """Updates an `MXNetLM` in place; `step(ids, targets, state) -> (loss, detached state)`.

    `optimizer="sgd"`: `p -= lr * g` (Gluon's SGD: no momentum, no weight decay).
    `optimizer="adam"`: Gluon's Adam with its defaults (beta1 0.9, beta2 0.999, eps 1e-8). MXNet
    folds the bias correction into the step size, `lr_t = lr * sqrt(1 - beta2**t) / (1 -
    beta1**t)`, `p -= lr_t * m / (sqrt(v) + eps)`, which equals the paper's (and torch's, optax's)
    `lr * m_hat / (sqrt(v_hat) + eps)` only with eps replaced by `eps / sqrt(1 - beta2**t)`: the
    same up to that epsilon. (MXNet's own docstring swaps beta1 and beta2 in this formula; its
    code reads as above.)

    MXNet hands `lr` (for Adam `lr_t`), `beta1`, `beta2` and `eps` to its update kernels as C
    `float`s, so in float64 they act rounded to float32: exact for `lr = 1.0` (d2l's SGD
    setting), off by about 1e-8 relative for `lr = 0.7`, and Adam's `1 - beta2` by 1.3e-5.
    """

    def __init__(self, model: MXNetLM, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0):
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.model, self.clip = model, clip
        leaves = model.leaves()
        self.grads = [p.grad(model.ctx) for p in leaves.values()]
        self.masks = [(leaves[name].grad(model.ctx), mask)
                      for name, mask in bias_masks(model).items()]
        # one context, so no kvstore; the loss is already a mean, hence step(1) below
        self.trainer = mx.gluon.Trainer(list(leaves.values()), optimizer, {"learning_rate": lr})

    def step(self, ids, targets, state=None):
        """`ids, targets: (B, T)`; `state`: the previous step's (None: zeros) -> `(loss, state)`."""
        loss, state = self.step_async(ids, targets, state)
        return float(loss.asscalar()), state

    def step_async(self, ids, targets, state=None):
        """`step` without waiting for the result: `(loss as an nd scalar, detached state)`.

        No host sync inside (MXNet's engine runs on); a timing harness calls `mx.nd.waitall()`.
        """
        loss, finals = loss_and_backward(self.model, ids, targets, state)
        for grad, mask in self.masks:
            grad *= mask
        if self.clip is not None:
            clip_gradients(self.grads, self.clip)
        self.trainer.step(1)
        return loss, detach_state(finals)

    def params(self) -> Params:
        """The model's current parameters in canonical form (NumPy)."""
        return self.model.canonical_params()


def make_trainer(model: MXNetLM, optimizer: str = "sgd", lr: float = 1.0,
                 clip: Optional[float] = 1.0) -> Trainer:
    """A `Trainer` over every parameter of `model` (`clip=None`: no clipping)."""
    return Trainer(model, optimizer, lr, clip)
