"""Stand-ins for a framework at the adapter boundary, with losses and states the tests choose.

`install(monkeypatch, module, obj)` makes `common.registry.get_module("stub", module)` (and so
`get_backend("stub")` for module "adapter") return `obj`, for the length of one test; the
training loops then run exactly as they do for a real framework.
"""
from __future__ import annotations

import numpy as np

from common import registry

NAME = "stub"


class _Module:
    """What `importlib.import_module` would give: an object with the attribute the loop reads."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


def install(monkeypatch, module: str, obj) -> None:
    """Register `obj` as backend "stub"'s `module` (for "adapter", `obj` is its BACKEND)."""
    monkeypatch.setitem(registry.BACKENDS, NAME, ("stub_impl", "stub", ()))
    value = _Module(BACKEND=obj) if module == "adapter" else obj
    monkeypatch.setitem(registry._cache, (NAME, module), value)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class StubLMTrainer:
    """Records every `step(X, Y, state)`; the loss of step n (1-based) is `losses(n, X)`;
    the state it returns is the string `"state-n"`; `params()` holds the step count."""

    def __init__(self, losses):
        self.losses, self.calls, self.n = losses, [], 0

    def step(self, X, Y, state):
        self.n += 1
        self.calls.append((X.copy(), Y.copy(), state))
        return float(self.losses(self.n, X)), f"state-{self.n}"

    def params(self):
        return {"W_hq": np.full((2, 2), float(self.n)), "b_q": np.zeros(2)}


class StubLMBackend:
    """An LM adapter whose `lm_forward` gives `stub_logits`: each validation token has a known
    cross-entropy, different from row to row."""

    name = NAME

    def __init__(self, losses, scale: float = 1.0):
        self.losses, self.scale, self.trainers, self.built, self.where = losses, scale, [], [], []

    def build_lm(self, cfg, params, dtype="float32", device="cpu"):
        self.built.append({k: np.array(v) for k, v in params.items()})
        self.where.append((dtype, device))
        return {"cfg": cfg, "params": self.built[-1]}

    def make_trainer(self, model, optimizer="sgd", lr=1.0, clip=1.0):
        self.trainers.append(StubLMTrainer(self.losses))
        return self.trainers[-1]

    def lm_forward(self, model, ids, state=None):
        return stub_logits(ids, model["cfg"].vocab_size, self.scale), None


def stub_logits(ids: np.ndarray, vocab: int, scale: float) -> np.ndarray:
    """(B, T, V): `scale * (ids % 3)` at index `(ids + 1) % V` (the next id), zeros elsewhere."""
    logits = np.zeros((*ids.shape, vocab))
    np.put_along_axis(logits, ((ids + 1) % vocab)[..., None], (scale * (ids % 3))[..., None],
                      axis=-1)
    return logits


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-token cross-entropy, (B, T), computed here independently of the code under test."""
    return -np.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)[..., 0]
