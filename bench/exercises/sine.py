"""Exercise 13: the chapter introduction's autoregressive model with an RNN. d2l's synthetic
sequence (a noisy sine), the MLP on tau lagged values against an RNN regressor, one-step and
k-step-ahead predictions.

The RNN is each framework's own layer (`build_layer` / `vjp` of the backend, any impl) with a
linear head; the head, the loss and Adam are NumPy, shared, so the frameworks differ only in
the recurrent layer. The MLP baseline is NumPy too (it is the same in every framework).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from bench.exercises.registry import Result, exercise
from bench.exercises.report import fmt, framework_plot
from common.config import LayerSpec
from common.params import init_params
from common.registry import get_backend

T_SERIES, TAU, N_TRAIN = 1000, 4, 600   # d2l: x_t = sin(0.01 t) + N(0, 0.2), t = 1..1000
KS = (1, 4, 16, 64)


def noisy_sine(seed: int = 0, T: int = T_SERIES) -> np.ndarray:
    t = np.arange(1, T + 1, dtype=np.float64)
    return np.sin(0.01 * t) + np.random.default_rng(seed).normal(0, 0.2, T)


class Adam:
    """Adam over a dict of NumPy arrays (lr 0.01, d2l's choice for this model)."""

    def __init__(self, params: Dict[str, np.ndarray], lr: float = 0.01):
        self.lr, self.t = lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        self.t += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            m_hat, v_hat = self.m[k] / (1 - 0.9 ** self.t), self.v[k] / (1 - 0.999 ** self.t)
            params[k] = params[k] - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


# ------------------------------------------------------------------ the MLP (d2l's baseline)

def lagged(x: np.ndarray, tau: int = TAU):
    """d2l's features: row t holds x[t-tau:t], label x[t], for t = tau .. len(x)-1."""
    return np.stack([x[i:len(x) - tau + i] for i in range(tau)], axis=1), x[tau:]


def mlp_init(seed=0, tau=TAU, hidden=10):
    rng = np.random.default_rng(seed)
    glorot = lambda a, b: rng.uniform(-1, 1, (a, b)) * np.sqrt(6 / (a + b))
    return {"W1": glorot(tau, hidden), "b1": np.zeros(hidden), "W2": glorot(hidden, 1),
            "b2": np.zeros(1)}


def mlp_forward(p, X):
    return np.maximum(X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]


def mlp_grads(p, X, y):
    """Gradients of the mean squared error of the MLP on (X, y)."""
    Z = X @ p["W1"] + p["b1"]
    A = np.maximum(Z, 0)
    d = 2 * (A @ p["W2"] + p["b2"] - y[:, None]) / len(y)
    dA = d @ p["W2"].T * (Z > 0)
    return {"W1": X.T @ dA, "b1": dA.sum(0), "W2": A.T @ d, "b2": d.sum(0)}


def train_mlp(x, epochs=5, batch=16, seed=0):
    X, y = lagged(x[:N_TRAIN + TAU])
    p, rng = mlp_init(seed), np.random.default_rng(seed)
    opt = Adam(p)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(y)), max(len(y) // batch, 1)):
            opt.step(p, mlp_grads(p, X[idx], y[idx]))
    return p


def mlp_rollout(p, x, origins: Sequence[int], kmax: int) -> np.ndarray:
    """(kmax, len(origins)): row k-1 predicts x[t0 + k - 1] from x[t0 - tau : t0], the MLP fed
    its own outputs after the first step."""
    window, preds = np.stack([x[t0 - TAU:t0] for t0 in origins]), []
    for _ in range(kmax):
        window = np.concatenate([window[:, 1:], mlp_forward(p, window)], axis=1)
        preds.append(window[:, -1])
    return np.stack(preds)


# ------------------------------------------------------------------ the RNN regressor

class RNNRegressor:
    """A one-layer RNN of `backend` and a NumPy linear head predicting x[t+1] from H_t."""

    def __init__(self, backend: str, impl: str, hidden: int, seed: int = 0):
        self.be, self.impl = get_backend(backend), impl
        self.spec = LayerSpec("rnn", 1, hidden)
        rng = np.random.default_rng(seed)
        self.params = {k: v.astype(np.float32) for k, v in init_params(self.spec, seed).items()}
        self.head = {"w": rng.normal(0, 0.1, (hidden, 1)).astype(np.float32),
                     "c": np.zeros(1, np.float32)}

    def layer(self):
        return self.be.build_layer(self.spec, self.impl, self.params, "float32")

    def grads(self, X, y):
        """(loss, layer grads, head grads) of the MSE on windows X, y: (W, B)."""
        layer, inputs = self.layer(), X[..., None].astype(np.float32)
        Y, _ = self.be.forward(layer, inputs, None)
        err = (Y @ self.head["w"])[..., 0] + self.head["c"] - y
        d = (2 * err / err.size).astype(np.float32)
        res = self.be.vjp(layer, inputs, None, d[..., None] * self.head["w"][:, 0])
        head = {"w": Y.reshape(-1, Y.shape[-1]).T @ d.reshape(-1, 1), "c": np.array([d.sum()])}
        return float((err ** 2).mean()), res.grads, head

    def hidden_path(self, x: np.ndarray) -> np.ndarray:
        """H_t for every t of the series read in order from a zero state: (len(x), H)."""
        Y, _ = self.be.forward(self.layer(), x[:, None, None].astype(np.float32), None)
        return Y[:, 0]

    def predict(self, H: np.ndarray) -> np.ndarray:
        return (H @ self.head["w"])[..., 0] + self.head["c"][0]

    def rollout(self, x, origins, kmax: int) -> np.ndarray:
        """(kmax, len(origins)): row k-1 predicts x[t0 + k - 1] from the state after reading
        x[:t0], the RNN fed its own outputs after the first step."""
        layer, H_all = self.layer(), self.hidden_path(x)
        state = [H_all[np.asarray(origins) - 1]]
        preds = [self.predict(state[0])]
        for _ in range(kmax - 1):
            Y, state = self.be.forward(layer, preds[-1][None, :, None].astype(np.float32), state)
            preds.append(self.predict(Y[0]))
        return np.stack(preds)


def windows(x: np.ndarray, length: int, batch: int, rng) -> tuple:
    """A batch of training windows (length, batch): inputs x[s:s+L], targets x[s+1:s+L+1]."""
    starts = rng.integers(0, N_TRAIN - length - 1, size=batch)
    X = np.stack([x[s:s + length] for s in starts], axis=1)
    return X, np.stack([x[s + 1:s + length + 1] for s in starts], axis=1)


def train_rnn(backend, impl, x, hidden, steps, seed=0) -> RNNRegressor:
    model, rng = RNNRegressor(backend, impl, hidden, seed), np.random.default_rng(seed)
    opt_layer, opt_head = Adam(model.params), Adam(model.head)
    for _ in range(steps):
        _, g_layer, g_head = model.grads(*windows(x, 32, 16, rng))
        opt_layer.step(model.params, {k: v.astype(np.float32) for k, v in g_layer.items()})
        opt_head.step(model.head, {k: v.astype(np.float32) for k, v in g_head.items()})
    return model


def k_step_mse(rollout, x, ks=KS) -> Dict[int, float]:
    """MSE of k-step-ahead predictions, from every origin t0 >= N_TRAIN whose k-th target
    exists: `rollout(origins, kmax)` gives (kmax, len(origins)) predictions."""
    origins = np.arange(N_TRAIN, len(x) - max(ks) + 1)
    preds = rollout(origins, max(ks))
    return {k: float(np.mean((preds[k - 1] - x[origins + k - 1]) ** 2)) for k in ks}


@exercise(13, "d2l 1.0 §9.6 (concise RNN), exercise 2 (the Gluon edition's exercise 3)",
          "The chapter introduction's autoregressive model, with an RNN: on d2l's noisy sine "
          "(generated), the MLP on tau = 4 lagged values against an RNN that carries its "
          "state, predicting one step and k steps ahead.")
def autoregression(ctx) -> Result:
    x = noisy_sine()
    steps = ctx.settings.sine_steps
    mlp = train_mlp(x)
    mlp_mse = k_step_mse(lambda o, k: mlp_rollout(mlp, x, o, k), x)
    rows = [{"framework": "numpy", "model": "MLP tau=4", **{f"mse@{k}": mlp_mse[k] for k in KS}}]
    panels = {}
    for backend in ctx.backends:
        ctx.log(f"train {backend} RNN regressor, {steps} steps")
        rnn = train_rnn(backend, "scratch", x, 16, steps)
        mse = k_step_mse(lambda o, k: rnn.rollout(x, o, k), x)
        rows.append({"framework": backend, "model": "RNN H=16", **{f"mse@{k}": mse[k] for k in KS}})
        panels[backend] = {"MLP": (list(KS), [mlp_mse[k] for k in KS]),
                           "RNN": (list(KS), [mse[k] for k in KS])}
    plot = framework_plot(ctx.out / "ex13_k_step.png", panels, "k (steps ahead)", "test MSE",
                          logx=True, logy=True)
    rnn_rows = rows[1:]
    answer = (f"One step ahead both come close to the noise floor (its variance is 0.04): MLP "
              f"{fmt(mlp_mse[1])}, RNN {', '.join(fmt(r['mse@1']) for r in rnn_rows)} "
              f"({', '.join(ctx.backends)}). Feeding their own predictions back, errors "
              f"compound: at k = {KS[-1]} the MLP's MSE is {fmt(mlp_mse[KS[-1]])} and the RNN's "
              f"{', '.join(fmt(r[f'mse@{KS[-1]}']) for r in rnn_rows)}.")
    return Result(rows, answer, [plot])
