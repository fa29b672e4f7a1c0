"""An independent NumPy reference of the contract's cells, stack and directions.

Written straight from docs/contract.md's equations, with no code shared with any backend, so that
every framework's scratch and built-in layer can be checked against it. Gradients are checked
by central finite differences of this reference in float64.
"""
import numpy as np

from common.params import prefixes


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def step(cell, variant, p, x, state):
    """One time step of one cell. `p`: keys without prefix; state (B,H) or (H, C) for LSTM."""
    if cell == "rnn":
        return np.tanh(x @ p["W_xh"] + state @ p["W_hh"] + p["b_h"])
    if cell == "lstm":
        H, C = state
        I = _sigmoid(x @ p["W_xi"] + H @ p["W_hi"] + p["b_i"])
        F = _sigmoid(x @ p["W_xf"] + H @ p["W_hf"] + p["b_f"])
        O = _sigmoid(x @ p["W_xo"] + H @ p["W_ho"] + p["b_o"])
        C_tilde = np.tanh(x @ p["W_xc"] + H @ p["W_hc"] + p["b_c"])
        C = F * C + I * C_tilde
        return (O * np.tanh(C), C)
    H = state
    Z = _sigmoid(x @ p["W_xz"] + H @ p["W_hz"] + p["b_z"])
    R = _sigmoid(x @ p["W_xr"] + H @ p["W_hr"] + p["b_r"])
    if variant == "reset_after":
        H_tilde = np.tanh(x @ p["W_xh"] + p["b_h"] + R * (H @ p["W_hh"] + p["b_hn"]))
    else:
        H_tilde = np.tanh(x @ p["W_xh"] + p["b_h"] + (R * H) @ p["W_hh"] + p["b_hn"])
    return Z * H + (1 - Z) * H_tilde


def _hidden(cell, state):
    return state[0] if cell == "lstm" else state


def forward(spec, params, X, state=None):
    """X: (T, B, I) -> (Y: (T, B, H*D), final states in the contract's order)."""
    B, H = X.shape[1], spec.hidden_size
    zeros = lambda: np.zeros((B, H), dtype=X.dtype)
    pre = prefixes(spec)
    if state is None:
        state = [(zeros(), zeros()) if spec.cell == "lstm" else zeros() for _ in pre]
    finals, inputs, idx = [], X, 0
    for layer in range(spec.num_layers):
        outs = []
        for d in range(spec.num_directions):
            p = {k[len(pre[idx]):]: v for k, v in params.items() if k.startswith(pre[idx])}
            s = state[idx]
            steps = range(len(inputs)) if d == 0 else reversed(range(len(inputs)))
            ys = [None] * len(inputs)
            for t in steps:
                s = step(spec.cell, spec.gru_variant, p, inputs[t], s)
                ys[t] = _hidden(spec.cell, s)
            outs.append(np.stack(ys))
            finals.append(s)
            idx += 1
        inputs = np.concatenate(outs, axis=-1)
    return inputs, finals


def objective(spec, params, X, state, G, G_state=None):
    """sum(Y * G) + sum(final_states * G_state): the scalar whose gradient is the VJP."""
    Y, finals = forward(spec, params, X, state)
    total = np.sum(Y * G)
    if G_state is not None:
        for s, g in zip(finals, G_state):
            if isinstance(s, tuple):
                total += np.sum(s[0] * g[0]) + np.sum(s[1] * g[1])
            else:
                total += np.sum(s * g)
    return total


def numeric_grad(f, array, eps=1e-6):
    """Central differences of scalar f() with respect to every entry of `array` (in place)."""
    grad = np.zeros_like(array)
    it = np.nditer(array, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = array[i]
        array[i] = old + eps
        up = f()
        array[i] = old - eps
        down = f()
        array[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def lm_forward(cfg, params, ids, state=None):
    """Language model: ids (B, T) -> logits (B, T, V), final states. One-hot or embedding input."""
    ids = np.asarray(ids)
    if cfg.embed_size is None:
        X = np.eye(cfg.vocab_size, dtype=params["W_hq"].dtype)[ids.T]
    else:
        X = params["embedding"][ids.T]
    layer_params = {k: v for k, v in params.items() if k.startswith("l")}
    Y, finals = forward(cfg.layer_spec, layer_params, X, state)
    logits = Y @ params["W_hq"] + params["b_q"]
    return logits.transpose(1, 0, 2), finals


def cross_entropy(logits, targets):
    """Mean cross-entropy over every (batch, step): logits (B, T, V), targets (B, T)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.mean(np.take_along_axis(logp, targets[..., None], axis=-1))


# ---------------------------------------------------------------- seq2seq (d2l 1.0's GRU Seq2Seq)

def _side_stack(cfg, params, side):
    """(LayerSpec of the whole stack, its params renamed `l{k}.*`)."""
    prefix = f"{side}."
    layer = {k[len(prefix):]: v for k, v in params.items()
             if k.startswith(prefix) and k[len(prefix):].startswith("l")}
    return cfg.spec(side), layer


def seq2seq_encode(cfg, params, src):
    """src (B, Ts) -> the encoder's final states, one (B, H) per layer."""
    X = params["encoder.embedding"][np.asarray(src).T]
    spec, layer = _side_stack(cfg, params, "encoder")
    return forward(spec, layer, X)[1]


def seq2seq_decode(cfg, params, dec_in, context, state):
    """dec_in (B, T), context (B, H), state: per layer (B, H) -> (logits (B, T, Vt), state)."""
    emb = params["decoder.embedding"][np.asarray(dec_in).T]
    X = np.concatenate([emb, np.broadcast_to(context, emb.shape[:2] + context.shape[1:])], -1)
    spec, layer = _side_stack(cfg, params, "decoder")
    Y, state = forward(spec, layer, X, state)
    logits = Y @ params["decoder.W_hq"] + params["decoder.b_q"]
    return logits.transpose(1, 0, 2), state


def seq2seq_forward(cfg, params, src, dec_in):
    """Teacher-forced logits (B, T, Vt) of src (B, Ts) and dec_in (B, T)."""
    finals = seq2seq_encode(cfg, params, src)
    return seq2seq_decode(cfg, params, dec_in, finals[-1], finals)[0]


def masked_cross_entropy(logits, label, label_valid_len):
    """d2l 1.0's Seq2Seq loss: sum(nll * mask) / sum(mask), mask = position < valid length."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.asarray(label)[..., None], axis=-1)[..., 0]
    mask = np.arange(nll.shape[1])[None, :] < np.asarray(label_valid_len)[:, None]
    return (nll * mask).sum() / mask.sum()


def seq2seq_greedy(cfg, params, src, bos, eos, num_steps):
    """Raw greedy tokens (B, num_steps): each step feeds the previous argmax (no truncation)."""
    finals = seq2seq_encode(cfg, params, src)
    token, state, out = np.full((len(src), 1), bos), finals, []
    for _ in range(num_steps):
        logits, state = seq2seq_decode(cfg, params, token, finals[-1], state)
        token = logits.argmax(-1)
        out.append(token[:, 0])
    return np.stack(out, axis=1)
