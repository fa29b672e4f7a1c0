"""Metrics shared by every framework: perplexity, d2l's BLEU, accuracy, masked means."""
from __future__ import annotations

import collections
import math
from typing import Sequence, Union

import numpy as np

Tokens = Union[str, Sequence[str]]


def perplexity(mean_nll):
    """exp of the mean negative log-likelihood per token (float or array)."""
    return np.exp(mean_nll) if isinstance(mean_nll, np.ndarray) else math.exp(mean_nll)


def _tokens(seq: Tokens) -> list:
    """Token list from a list, or from a string split on single spaces as d2l does."""
    return seq.split(" ") if isinstance(seq, str) else list(seq)


def _ngram_counts(tokens: list, n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(pred_tokens: Tokens, label_tokens: Tokens, k: int) -> float:
    """d2l's BLEU of one predicted sentence against one label sentence.

    exp(min(0, 1 - len_label / len_pred)) * prod_n p_n ** (0.5 ** n) for n = 1..min(k, len_pred),
    with p_n the clipped n-gram precision (d2l 1.0 stops at len_pred, so a short prediction
    is not scored on n-grams it cannot have). Strings are split on ' ' as d2l does. An empty
    token list scores 0 (d2l divides by zero there).
    """
    pred, label = _tokens(pred_tokens), _tokens(label_tokens)
    if not pred:
        return 0.0
    score = math.exp(min(0.0, 1 - len(label) / len(pred)))
    for n in range(1, min(k, len(pred)) + 1):
        label_counts = _ngram_counts(label, n)
        pred_counts = _ngram_counts(pred, n)
        matches = sum(min(count, label_counts[gram]) for gram, count in pred_counts.items())
        score *= math.pow(matches / (len(pred) - n + 1), math.pow(0.5, n))
    return score


def corpus_bleu(preds: Sequence[Tokens], labels: Sequence[Tokens], k: int) -> float:
    """Mean of the sentence BLEU scores (d2l reports sentence scores; this averages them).

    This is not the corpus-level BLEU of Papineni et al., which pools n-gram counts first.
    """
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions but {len(labels)} labels")
    if not preds:
        raise ValueError("corpus_bleu needs at least one sentence")
    return float(np.mean([bleu(p, y, k) for p, y in zip(preds, labels)]))


def accuracy(pred_ids, target_ids) -> float:
    """Fraction of positions where the ids agree. pred_ids, target_ids: the same shape."""
    pred_ids, target_ids = np.asarray(pred_ids), np.asarray(target_ids)
    if pred_ids.shape != target_ids.shape:
        raise ValueError(f"shapes differ: predictions {pred_ids.shape}, targets {target_ids.shape}")
    if pred_ids.size == 0:
        raise ValueError("accuracy of an empty array is undefined")
    return float(np.mean(pred_ids == target_ids))


def masked_mean(values, mask) -> float:
    """sum(values * mask) / sum(mask). values: any shape; mask: 0/1 or bool, broadcastable."""
    values = np.asarray(values, dtype=np.float64)
    mask = np.broadcast_to(np.asarray(mask, dtype=np.float64), values.shape)
    total = mask.sum()
    if total == 0:
        raise ValueError("the mask selects no element: the masked mean is undefined")
    return float((values * mask).sum() / total)
