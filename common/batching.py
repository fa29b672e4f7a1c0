"""Minibatches of token ids, in NumPy (int64): d2l's samplers, d2l 1.0's windows, fastai's chunks.

Every random choice comes from the `np.random.Generator` passed in, so a seed fixes the batches.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from .errors import DataError

Batch = Tuple[np.ndarray, np.ndarray]


def _as_ids(corpus) -> np.ndarray:
    """The corpus as a 1-D int64 array."""
    ids = np.asarray(corpus, dtype=np.int64)
    if ids.ndim != 1:
        raise DataError(f"a corpus must be a 1-D sequence of token ids, got shape {ids.shape}")
    return ids


def _check_positive(**sizes) -> None:
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _require_tokens(have: int, need: int, batch_size: int, num_steps: int, why: str) -> None:
    if have < need:
        raise DataError(
            f"the corpus has {have} tokens, but batch_size={batch_size} and num_steps={num_steps} "
            f"need at least {need} ({why}); use a longer corpus or smaller batch_size/num_steps")


def seq_data_iter_random(corpus, batch_size: int, num_steps: int,
                         rng: np.random.Generator) -> Iterator[Batch]:
    """d2l's random sampling: shuffled, non-overlapping subsequences after a random offset.

    corpus: (N,) ids. Yields (X, Y), each (batch_size, num_steps); Y is X shifted by one token.
    Raises DataError unless a full batch exists for every offset (N >= (batch_size + 1) * num_steps).
    """
    corpus = _as_ids(corpus)
    _check_positive(batch_size=batch_size, num_steps=num_steps)
    # Worst case: offset num_steps - 1, then batch_size subsequences plus one label token.
    _require_tokens(len(corpus), (batch_size + 1) * num_steps, batch_size, num_steps,
                    "one batch after the largest random offset, num_steps - 1")
    return _random_batches(corpus, batch_size, num_steps, rng)


def _random_batches(corpus, batch_size, num_steps, rng) -> Iterator[Batch]:
    corpus = corpus[rng.integers(0, num_steps):]
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = np.arange(0, num_subseqs * num_steps, num_steps)
    rng.shuffle(starts)
    steps = np.arange(num_steps)
    for i in range(0, batch_size * (num_subseqs // batch_size), batch_size):
        idx = starts[i:i + batch_size, None] + steps
        yield corpus[idx], corpus[idx + 1]


def seq_data_iter_sequential(corpus, batch_size: int, num_steps: int,
                             rng: np.random.Generator) -> Iterator[Batch]:
    """d2l's sequential partitioning: row b of batch i+1 continues row b of batch i.

    corpus: (N,) ids. Yields (X, Y), each (batch_size, num_steps); Y is X shifted by one token.
    Raises DataError unless a full batch exists for every offset (N >= (batch_size + 1) * num_steps + 1).
    """
    corpus = _as_ids(corpus)
    _check_positive(batch_size=batch_size, num_steps=num_steps)
    # Worst case: offset num_steps, then batch_size rows of num_steps plus one label token.
    _require_tokens(len(corpus), (batch_size + 1) * num_steps + 1, batch_size, num_steps,
                    "one batch after the largest random offset, num_steps")
    return _sequential_batches(corpus, batch_size, num_steps, rng)


def _sequential_batches(corpus, batch_size, num_steps, rng) -> Iterator[Batch]:
    offset = int(rng.integers(0, num_steps + 1))
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset:offset + num_tokens].reshape(batch_size, -1)
    Ys = corpus[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, num_steps * (Xs.shape[1] // num_steps), num_steps):
        yield Xs[:, i:i + num_steps].copy(), Ys[:, i:i + num_steps].copy()


def sliding_windows(corpus, num_steps: int, num_train: int = 10000,
                    num_val: int = 5000) -> Tuple[np.ndarray, ...]:
    """d2l 1.0's TimeMachine arrays: one window of num_steps + 1 ids at every start position.

    corpus: (N,) ids. Returns (X_train, Y_train, X_val, Y_val): X (num_train or num_val, num_steps)
    = window[:-1], Y = window[1:]; train are the first num_train windows, val the next num_val.
    Raises DataError when N - num_steps windows are fewer than num_train + num_val (d2l would
    silently shorten the validation set).
    """
    corpus = _as_ids(corpus)
    _check_positive(num_steps=num_steps, num_train=num_train)
    need = num_train + num_val
    if len(corpus) - num_steps < need:
        raise DataError(
            f"the corpus has {len(corpus)} tokens, giving {max(len(corpus) - num_steps, 0)} windows "
            f"of num_steps + 1 = {num_steps + 1}; num_train + num_val = {need} windows need at "
            f"least {need + num_steps} tokens. Lower num_train/num_val or use a longer corpus")
    windows = np.lib.stride_tricks.sliding_window_view(corpus, num_steps + 1)[:need]
    X, Y = windows[:, :-1].copy(), windows[:, 1:].copy()
    return X[:num_train], Y[:num_train], X[num_train:], Y[num_train:]


def minibatches(arrays: Sequence, batch_size: int, shuffle: bool,
                rng: Optional[np.random.Generator] = None,
                drop_last: bool = False) -> Iterator[tuple]:
    """Tuples of rows taken at the same indices from each array, like a DataLoader.

    arrays: each (N, ...). Yields tuples of (batch_size, ...) arrays; the last batch is
    smaller unless `drop_last`. `shuffle` draws a permutation from `rng`.
    """
    arrays = [np.asarray(a) for a in arrays]
    _check_positive(batch_size=batch_size)
    lengths = sorted({len(a) for a in arrays})
    if len(lengths) != 1:
        raise DataError(f"arrays to batch together must have the same length, got {lengths}")
    if shuffle and rng is None:
        raise ValueError("shuffle=True needs rng, an np.random.Generator")
    n = lengths[0]
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return (tuple(a[order[i:i + batch_size]] for a in arrays) for i in range(0, stop, batch_size))


def group_chunk_order(n: int, batch_size: int) -> np.ndarray:
    """fastbook's `group_chunks` as indices: position i*batch_size + j holds item i + m*j.

    m = n // batch_size; the last n - m*batch_size items are dropped, as fastbook does.
    """
    _check_positive(batch_size=batch_size)
    m = n // batch_size
    if m == 0:
        raise DataError(f"{n} sequences cannot fill one batch of batch_size={batch_size}")
    return np.arange(m * batch_size).reshape(batch_size, m).T.ravel()


def group_chunks(sequences, batch_size: int):
    """Reorder so that row j of batch i continues row j of batch i-1 (fastbook, chapter 12).

    sequences: an array (N, ...) or a list of N items. Returns the same kind with
    (N // batch_size) * batch_size items.
    """
    order = group_chunk_order(len(sequences), batch_size)
    if isinstance(sequences, np.ndarray):
        return sequences[order]
    return [sequences[i] for i in order]


def seq2seq_batches(src, src_valid, dec_in, label, batch_size: int, shuffle: bool,
                    rng: Optional[np.random.Generator] = None) -> Iterator[tuple]:
    """Minibatches of a translation set, as d2l 1.0's MTFraEng loader gives them.

    src, dec_in, label: (N, num_steps); src_valid: (N,). Yields tuples
    (src, src_valid, dec_in, label) of batch_size rows (the last batch may be smaller).
    """
    return minibatches((src, src_valid, dec_in, label), batch_size, shuffle, rng)
