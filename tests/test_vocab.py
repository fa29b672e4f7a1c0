"""Vocab: d2l 0.17's ordering, lookups both ways, and the JSON round trip."""
import json

import numpy as np
import pytest

from common.errors import DataError
from common.vocab import Vocab


@pytest.mark.parametrize("tokens, kwargs, expected", [
    ("b a a c c c".split(), {}, ["<unk>", "c", "a", "b"]),
    ("x y y x z".split(), {}, ["<unk>", "x", "y", "z"]),
    ("b a a c c c".split(), {"min_freq": 2}, ["<unk>", "c", "a"]),
    ("b a a".split(), {"reserved_tokens": ["<pad>", "<eos>"]}, ["<unk>", "<pad>", "<eos>", "a", "b"]),
    ("a a b".split(), {"min_freq": 5, "reserved_tokens": ["<pad>"]}, ["<unk>", "<pad>"]),
    ([["a", "b"], ["b", "c"]], {}, ["<unk>", "b", "a", "c"]),
    ("a <unk> <unk>".split(), {}, ["<unk>", "a"]),
    ("a <pad> <pad>".split(), {"reserved_tokens": ["<pad>", "<pad>"]}, ["<unk>", "<pad>", "a"]),
    ([], {}, ["<unk>"]),
], ids=["by-frequency", "ties-first-seen", "min-freq", "reserved-after-unk",
        "reserved-kept-when-rare", "list-of-lists", "unk-in-tokens", "duplicate-reserved", "empty"])
def test_order(tokens, kwargs, expected):
    assert Vocab(tokens, **kwargs).idx_to_token == expected


@pytest.fixture
def vocab():
    return Vocab("the cat sat on the mat the end".split(), reserved_tokens=["<pad>"])


def test_len(vocab):
    assert len(vocab) == 8  # <unk>, <pad>, the, cat, sat, on, mat, end


@pytest.mark.parametrize("query, expected", [
    ("the", 2), ("cat", 3), ("dog", 0), (["the", "dog", "<pad>"], [2, 0, 1]),
    (("cat", "mat"), [3, 6]), ([], []),
], ids=["known", "second", "unknown", "list", "tuple", "empty-list"])
def test_getitem(vocab, query, expected):
    assert vocab[query] == expected


@pytest.mark.parametrize("indices, expected", [
    (2, "the"), (np.int64(3), "cat"), ([0, 1, 2], ["<unk>", "<pad>", "the"]),
    (np.array([6, 7]), ["mat", "end"]),
], ids=["int", "numpy-int", "list", "array"])
def test_to_tokens(vocab, indices, expected):
    assert vocab.to_tokens(indices) == expected


def test_contains(vocab):
    assert "cat" in vocab and "dog" not in vocab


def test_unk_is_zero(vocab):
    assert vocab.unk == 0 and vocab.to_tokens(vocab.unk) == "<unk>"


def test_token_freqs(vocab):
    assert vocab.token_freqs[:2] == [("the", 3), ("cat", 1)]


def test_round_trip_through_json(vocab):
    restored = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored.idx_to_token == vocab.idx_to_token
    assert restored["mat"] == vocab["mat"] and restored["dog"] == vocab.unk
    assert restored.token_freqs == vocab.token_freqs


def test_from_dict_rejects_missing_unk():
    with pytest.raises(DataError, match="<unk>"):
        Vocab.from_dict({"idx_to_token": ["a", "b"]})
