"""Text generation from a language model in any backend: a prefix warms the state up, then
greedy decoding or sampling with q ∝ p^α (d2l's exercise), seeded. The loop is framework-neutral,
so greedy text from the same parameters is the same in every framework."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from common.checkpoint import check_finite
from common.config import LMConfig
from common.errors import DataError
from common.params import check_params, lm_param_shapes, load_params
from common.registry import get_backend
from common.vocab import Vocab


def prefix_ids(prefix: str, vocab: Vocab, token: str) -> List[int]:
    """Ids of the prefix's tokens; any token outside the vocabulary is an error naming it."""
    tokens = list(prefix) if token == "char" else prefix.split()
    if not tokens:
        raise DataError("the prefix is empty: give at least one token to start from")
    unknown = sorted({t for t in tokens if t not in vocab or vocab[t] == vocab.unk})
    if unknown:
        raise DataError(f"the prefix has {'characters' if token == 'char' else 'words'} outside "
                        f"the vocabulary: {', '.join(map(repr, unknown))}")
    return vocab[tokens]


def next_token(logits: np.ndarray, alpha: Optional[float], rng: np.random.Generator) -> int:
    """Greedy (`alpha=None`) or a draw from q ∝ softmax(logits)^alpha. logits: (V,)."""
    if alpha is None:
        return int(np.argmax(logits))
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    z = alpha * (logits.astype(np.float64) - logits.max())   # p^α ∝ exp(α·logits)
    q = np.exp(z)
    return int(rng.choice(len(q), p=q / q.sum()))


def generate(be, model, vocab: Vocab, token: str, prefix: str, num_preds: int,
             alpha: Optional[float] = None, seed: int = 0) -> str:
    """The prefix followed by `num_preds` generated tokens."""
    ids = prefix_ids(prefix, vocab, token)
    rng = np.random.default_rng(seed)
    logits, state = be.lm_forward(model, np.asarray([ids], dtype=np.int64), None)
    out = list(ids)
    for _ in range(num_preds):
        out.append(next_token(logits[0, -1], alpha, rng))
        logits, state = be.lm_forward(model, np.asarray([[out[-1]]], dtype=np.int64), state)
    return ("" if token == "char" else " ").join(vocab.to_tokens(out))


def checkpoint_config(path, params, meta: dict, impl: Optional[str] = None):
    """(LMConfig, Vocab) a checkpoint describes, checked against its arrays: a DataError
    naming the file when the metadata was edited or does not fit the weights."""
    try:
        model_cfg = dict(meta["model"])
        vocab = Vocab.from_dict(meta["vocab"])
        if impl:
            model_cfg["impl"] = impl
        cfg = LMConfig(**model_cfg)
        check_params(params, lm_param_shapes(cfg))
        if len(vocab) != cfg.vocab_size:
            raise ValueError(f"a vocabulary of {len(vocab)} tokens for vocab_size {cfg.vocab_size}")
    except KeyError as exc:
        raise DataError(f"{path} is not a language-model checkpoint (no {exc} in it)") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: its metadata does not describe its weights ({exc}); it was "
                        "edited or damaged: use another checkpoint") from None
    return cfg, vocab


def load_checkpoint(path, backend: str, impl: Optional[str] = None, device: str = "cpu"):
    """(adapter, model, vocab, token kind, meta) from a checkpoint written by any backend,
    refused (DataError) when damaged, edited, or holding NaN or infinite weights."""
    params, meta = load_params(path)
    check_finite(path, params)
    cfg, vocab = checkpoint_config(path, params, meta, impl)
    be = get_backend(backend)
    dtype = str(next(iter(params.values())).dtype)
    return be, be.build_lm(cfg, params, dtype, device), vocab, meta.get("token", "char"), meta
