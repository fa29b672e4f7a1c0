"""Batching: d2l's two samplers, d2l 1.0's windows, minibatches, fastbook's group_chunks.

The corpus `np.arange(N)` makes every id its own position, so "Y is X shifted by one" reads
`Y == X + 1` and continuity reads as consecutive numbers.
"""
import numpy as np
import pytest

from common import batching as bt
from common.errors import DataError

SAMPLERS = [bt.seq_data_iter_random, bt.seq_data_iter_sequential]
SAMPLER_IDS = ["random", "sequential"]


def batches(sampler, n, batch_size, num_steps, seed=0):
    return list(sampler(np.arange(n), batch_size, num_steps, np.random.default_rng(seed)))


@pytest.mark.parametrize("sampler", SAMPLERS, ids=SAMPLER_IDS)
def test_sampler_shapes_and_dtype(sampler):
    got = batches(sampler, 100, 3, 5)
    assert got and all(X.shape == Y.shape == (3, 5) for X, Y in got)
    assert all(X.dtype == Y.dtype == np.int64 for X, Y in got)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=SAMPLER_IDS)
def test_sampler_label_is_input_shifted_by_one(sampler):
    X = np.stack([x for x, _ in batches(sampler, 100, 3, 5)])
    Y = np.stack([y for _, y in batches(sampler, 100, 3, 5)])
    np.testing.assert_array_equal(Y, X + 1)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=SAMPLER_IDS)
def test_sampler_rows_are_contiguous_text(sampler):
    X = np.concatenate([x for x, _ in batches(sampler, 100, 3, 5)])
    np.testing.assert_array_equal(np.diff(X, axis=1), 1)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=SAMPLER_IDS)
def test_sampler_is_reproducible_from_seed(sampler):
    first, again = batches(sampler, 200, 4, 6, seed=3), batches(sampler, 200, 4, 6, seed=3)
    np.testing.assert_array_equal(np.stack([x for x, _ in first]), np.stack([x for x, _ in again]))


def test_random_sampler_subsequences_do_not_overlap():
    starts = np.concatenate([x[:, 0] for x, _ in batches(bt.seq_data_iter_random, 200, 4, 6)])
    assert len(set(starts % 6)) == 1 and len(set(starts)) == len(starts)


def test_random_sampler_shuffles():
    starts = np.concatenate([x[:, 0] for x, _ in batches(bt.seq_data_iter_random, 500, 4, 6)])
    assert not np.all(np.diff(starts) > 0)


def test_sequential_rows_continue_across_batches():
    X = np.stack([x for x, _ in batches(bt.seq_data_iter_sequential, 200, 4, 6)])
    assert X.shape[0] >= 2
    np.testing.assert_array_equal(X[1:, :, 0], X[:-1, :, -1] + 1)


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("sampler, minimum", [
    (bt.seq_data_iter_random, (3 + 1) * 5), (bt.seq_data_iter_sequential, (3 + 1) * 5 + 1),
], ids=SAMPLER_IDS)
def test_sampler_shortest_corpus_gives_a_batch_for_any_offset(sampler, minimum, seed):
    assert len(batches(sampler, minimum, 3, 5, seed)) == 1


@pytest.mark.parametrize("sampler, minimum", [
    (bt.seq_data_iter_random, (3 + 1) * 5), (bt.seq_data_iter_sequential, (3 + 1) * 5 + 1),
], ids=SAMPLER_IDS)
def test_sampler_too_short_corpus_raises(sampler, minimum):
    with pytest.raises(DataError, match=f"has {minimum - 1} tokens.*at least {minimum}"):
        sampler(np.arange(minimum - 1), 3, 5, np.random.default_rng(0))


def test_sampler_rejects_2d_corpus():
    with pytest.raises(DataError, match="1-D"):
        bt.seq_data_iter_random(np.zeros((4, 50)), 2, 3, np.random.default_rng(0))


def test_sliding_windows_hand_example():
    X_tr, Y_tr, X_va, Y_va = bt.sliding_windows(np.arange(10), 3, num_train=4, num_val=2)
    np.testing.assert_array_equal(X_tr, [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
    np.testing.assert_array_equal(Y_tr, X_tr + 1)
    np.testing.assert_array_equal(X_va, [[4, 5, 6], [5, 6, 7]])
    np.testing.assert_array_equal(Y_va, [[5, 6, 7], [6, 7, 8]])
    assert X_tr.dtype == np.int64 and X_tr.flags.writeable


def test_sliding_windows_uses_every_window():
    X_tr, _, X_va, Y_va = bt.sliding_windows(np.arange(10), 3, num_train=5, num_val=2)
    assert Y_va[-1, -1] == 9  # the last window ends on the last token


def test_sliding_windows_too_short_raises():
    with pytest.raises(DataError, match="has 10 tokens.*at least 11"):
        bt.sliding_windows(np.arange(10), 3, num_train=6, num_val=2)


def test_minibatches_in_order_with_last_partial():
    got = list(bt.minibatches((np.arange(5), np.arange(5) * 10), 2, shuffle=False))
    assert [b[0].tolist() for b in got] == [[0, 1], [2, 3], [4]]
    assert [b[1].tolist() for b in got] == [[0, 10], [20, 30], [40]]


def test_minibatches_drop_last():
    got = list(bt.minibatches((np.arange(5),), 2, shuffle=False, drop_last=True))
    assert [b[0].tolist() for b in got] == [[0, 1], [2, 3]]


def test_minibatches_shuffle_is_a_permutation_kept_aligned():
    got = list(bt.minibatches((np.arange(50), np.arange(50) * 10), 8, True,
                              np.random.default_rng(0)))
    first = np.concatenate([b[0] for b in got])
    assert sorted(first) == list(range(50)) and first.tolist() != list(range(50))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), first * 10)


def test_minibatches_length_mismatch_raises():
    with pytest.raises(DataError, match=r"\[3, 4\]"):
        bt.minibatches((np.arange(3), np.arange(4)), 2, shuffle=False)


def test_minibatches_shuffle_needs_rng():
    with pytest.raises(ValueError, match="rng"):
        bt.minibatches((np.arange(3),), 2, shuffle=True)


@pytest.mark.parametrize("sequences", [list("abcdefghij"), np.arange(10)], ids=["list", "array"])
def test_group_chunks_hand_example(sequences):
    # m = 10 // 3 = 3 chunks per row; item 9 is dropped, as in fastbook.
    got = bt.group_chunks(sequences, 3)
    expected = [sequences[i] for i in [0, 3, 6, 1, 4, 7, 2, 5, 8]]
    assert list(got) == expected and type(got) is type(sequences)


def test_group_chunks_rows_continue_across_batches():
    got = np.asarray(bt.group_chunks(np.arange(24), 4)).reshape(-1, 4)  # batches of 4
    np.testing.assert_array_equal(got[1:] - got[:-1], 1)


def test_group_chunks_too_few_raises():
    with pytest.raises(DataError, match="2 sequences.*batch_size=3"):
        bt.group_chunks([1, 2], 3)


def test_seq2seq_batches_keep_rows_aligned():
    src = np.arange(12).reshape(6, 2)
    got = list(bt.seq2seq_batches(src, np.arange(6), src + 100, src + 200, 4, False))
    assert len(got) == 2 and len(got[0]) == 4
    s, v, d, y = got[1]
    np.testing.assert_array_equal(s, [[8, 9], [10, 11]])
    assert v.tolist() == [4, 5] and (d == s + 100).all() and (y == s + 200).all()
