"""A token vocabulary with d2l 0.17's ordering: `<unk>`, reserved tokens, then by frequency."""
from __future__ import annotations

import collections
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from .errors import DataError

UNK = "<unk>"


def _flatten(tokens) -> List[str]:
    """A flat token list from a flat list or a list of token lists (as d2l's `count_corpus`)."""
    tokens = list(tokens)
    if tokens and isinstance(tokens[0], (list, tuple)):
        return [token for line in tokens for token in line]
    return tokens


class Vocab:
    """Maps tokens to ids and back.

    Index 0 is `<unk>`, then `reserved_tokens` in the order given, then every token with
    frequency >= `min_freq`, most frequent first; ties keep the order of first appearance
    (d2l 0.17; d2l 1.0 sorts alphabetically instead).
    """

    def __init__(self, tokens: Iterable = (), min_freq: int = 0,
                 reserved_tokens: Sequence[str] = ()):
        counter = collections.Counter(_flatten(tokens))
        # Counter keeps first-seen order and sorted() is stable: ties stay in that order.
        self._token_freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token = list(dict.fromkeys([UNK, *reserved_tokens]))
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}
        for token, freq in self._token_freqs:
            if freq < min_freq:
                break
            self._add(token)

    def _add(self, token: str) -> None:
        if token not in self.token_to_idx:
            self.token_to_idx[token] = len(self.idx_to_token)
            self.idx_to_token.append(token)

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __contains__(self, token) -> bool:
        return token in self.token_to_idx

    def __getitem__(self, tokens):
        """Id of one token, or a list of ids for a list/tuple of tokens; unknown -> `unk`."""
        if isinstance(tokens, (list, tuple)):
            return [self.__getitem__(token) for token in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def to_tokens(self, indices):
        """Token of one id, or a list of tokens for a list/tuple/1-D array of ids."""
        if isinstance(indices, (list, tuple, np.ndarray)):
            return [self.idx_to_token[int(i)] for i in indices]
        return self.idx_to_token[int(indices)]

    @property
    def unk(self) -> int:
        return 0

    @property
    def token_freqs(self) -> List[Tuple[str, int]]:
        """(token, count) for every counted token, most frequent first."""
        return list(self._token_freqs)

    def to_dict(self) -> Dict:
        """A JSON-serialisable description, enough to rebuild the same vocabulary."""
        return {"idx_to_token": list(self.idx_to_token),
                "token_freqs": [[t, int(f)] for t, f in self._token_freqs]}

    @classmethod
    def from_dict(cls, data: Dict) -> "Vocab":
        """Rebuild a vocabulary written by `to_dict` (no recounting)."""
        vocab = cls()
        vocab.idx_to_token = list(data["idx_to_token"])
        if not vocab.idx_to_token or vocab.idx_to_token[0] != UNK:
            raise DataError(f"a saved vocabulary must start with {UNK!r}")
        vocab.token_to_idx = {token: idx for idx, token in enumerate(vocab.idx_to_token)}
        vocab._token_freqs = [(t, int(f)) for t, f in data.get("token_freqs", [])]
        return vocab

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.idx_to_token[:8])
        return f"Vocab({len(self)} tokens: {head}{', ...' if len(self) > 8 else ''})"
