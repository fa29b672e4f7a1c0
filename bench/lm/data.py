"""Corpora and batches for language-model training, framework-neutral."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

from common import batching, corpora
from common.config import TrainConfig
from common.errors import DataError
from common.vocab import Vocab

DEFAULT_TOKEN = {"time_machine": "char", "war_of_the_worlds": "char", "human_numbers": "word",
                 "tiny_shakespeare": "char"}
LM_CORPORA = tuple(DEFAULT_TOKEN)


@dataclass
class LMData:
    """A tokenised corpus: ids `(N,)`, its vocabulary, the token kind and where it came from."""
    name: str
    ids: np.ndarray
    vocab: Vocab
    token: str
    source: str

    def join(self, tokens) -> str:
        return ("" if self.token == "char" else " ").join(tokens)


def load_corpus(name: str, path=None, token: Optional[str] = None, max_tokens: int = -1) -> LMData:
    """Load a language-model corpus; Human Numbers is generated when no path is given."""
    if name not in DEFAULT_TOKEN:
        raise ValueError(f"unknown LM corpus {name!r}: choose one of {', '.join(LM_CORPORA)}")
    if name == "war_of_the_worlds" and path is None:
        raise DataError("war_of_the_worlds is read from a file only: pass --path to Project "
                        "Gutenberg's eBook #36 (a plain-text UTF-8 file)")
    if max_tokens == 0 or max_tokens < -1:
        raise ValueError(f"max_tokens must be a positive number of tokens (or -1: all), got "
                         f"{max_tokens}")
    token = token or DEFAULT_TOKEN[name]
    if name == "human_numbers":
        tokens = corpora.load_human_numbers(path)
        tokens = tokens if token == "word" else list(" ".join(tokens))
        vocab = Vocab(tokens)
        ids = np.asarray(vocab[tokens], dtype=np.int64)
        ids = ids[:max_tokens] if max_tokens > 0 else ids
    elif name == "time_machine":
        ids, vocab = corpora.load_time_machine(path, token, max_tokens)
    elif name == "tiny_shakespeare":
        ids, vocab = corpora.load_tiny_shakespeare(path, token, max_tokens)
    else:
        ids, vocab = corpora.load_war_of_the_worlds(path, token, max_tokens)
    source = str(path) if path else ("generated" if name == "human_numbers" else "downloaded")
    return LMData(name, ids, vocab, token, source)


Batch = Tuple[np.ndarray, np.ndarray]


def check_fits(data: LMData, tcfg: TrainConfig) -> None:
    """Raise DataError now, not mid-training, when the corpus cannot give one batch."""
    next(iter(epoch_batches(data, tcfg, np.random.default_rng(0))))


def epoch_batches(data: LMData, tcfg: TrainConfig, rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch of (X, Y) batches, each `(batch_size, num_steps)` int64."""
    if tcfg.partition == "sequential":
        return batching.seq_data_iter_sequential(data.ids, tcfg.batch_size, tcfg.num_steps, rng)
    if tcfg.partition == "random":
        return batching.seq_data_iter_random(data.ids, tcfg.batch_size, tcfg.num_steps, rng)
    X, Y, _, _ = windows(data, tcfg)
    return batching.minibatches((X, Y), tcfg.batch_size, shuffle=True, rng=rng)


def windows(data: LMData, tcfg: TrainConfig):
    """d2l 1.0's sliding windows: (X_train, Y_train, X_val, Y_val)."""
    return batching.sliding_windows(data.ids, tcfg.num_steps, tcfg.num_train, tcfg.num_val)


def validation_batches(data: LMData, tcfg: TrainConfig) -> Iterator[Batch]:
    """Validation windows in order (only the `windows` partition has a validation split)."""
    if tcfg.partition != "windows":
        return iter(())
    _, _, X, Y = windows(data, tcfg)
    return batching.minibatches((X, Y), tcfg.batch_size, shuffle=False, rng=None)


def carries_state(tcfg: TrainConfig) -> bool:
    """Only d2l's sequential partitioning continues each row's text from batch to batch."""
    return tcfg.partition == "sequential"
