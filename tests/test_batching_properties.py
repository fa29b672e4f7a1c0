"""Property tests of the partitions and windows, for arbitrary corpus lengths, batch sizes and
steps (hypothesis draws them; a failure is shrunk to the smallest case).

The corpus is `np.arange(N)`, so each id is its own position: "Y is X shifted by one" reads
`Y == X + 1`, an index past the corpus reads `Y.max() > N - 1`, and a row's first id is where it
starts.
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from common import batching as bt

SETTINGS = settings(max_examples=60, deadline=None)

sizes = st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(0, 60))


class ForcedOffset:
    """A `np.random.Generator` whose `integers` returns `offset` (and records the range it was
    asked for), so each offset of the range can be tried in turn; shuffles stay random."""

    def __init__(self, offset, seed=0):
        self.offset, self.asked, self.rng = offset, [], np.random.default_rng(seed)

    def integers(self, low, high=None, *args, **kw):
        low, high = (0, low) if high is None else (low, high)
        self.asked.append((int(low), int(high)))
        assert low <= self.offset < high, f"offset {self.offset} outside [{low}, {high})"
        return np.int64(self.offset)

    def shuffle(self, x):
        self.rng.shuffle(x)

    def permutation(self, x):
        return self.rng.permutation(x)


def _each_offset(sampler, n, b, t, offsets):
    """{offset: batches} for every offset of `offsets`, checking the sampler asks for exactly
    that range."""
    out = {}
    for offset in offsets:
        rng = ForcedOffset(offset, seed=offset)
        out[offset] = list(sampler(np.arange(n), b, t, rng))
        assert rng.asked == [(offsets.start, offsets.stop)]
    return out


def _check_shifted_and_inside(batches, n, b, t):
    for X, Y in batches:
        assert X.shape == Y.shape == (b, t) and X.dtype == Y.dtype == np.int64
        np.testing.assert_array_equal(Y, X + 1)
        assert X.min() >= 0 and Y.max() <= n - 1
        np.testing.assert_array_equal(np.diff(X, axis=1), 1)   # each row is running text


@SETTINGS
@given(sizes)
def test_random_sampler_properties(size):
    """d2l: offset in [0, num_steps - 1], then every whole batch of non-overlapping
    subsequences whose labels fit, shuffled."""
    b, t, extra = size
    n = (b + 1) * t + extra                       # the documented minimum, and more
    for offset, batches in _each_offset(bt.seq_data_iter_random, n, b, t, range(t)).items():
        _check_shifted_and_inside(batches, n, b, t)
        starts = np.concatenate([X[:, 0] for X, _ in batches])
        available = sum(1 for k in range(n) if offset + k * t + t <= n - 1)
        assert len(batches) == available // b >= 1
        assert len(set(starts)) == len(starts)                 # no subsequence twice
        assert set(starts) <= {offset + k * t for k in range(available)}


@SETTINGS
@given(sizes)
def test_sequential_sampler_properties(size):
    """d2l: offset in [0, num_steps], rows tiling what follows, row b of batch i+1 continuing
    row b of batch i, every whole batch."""
    b, t, extra = size
    n = (b + 1) * t + 1 + extra
    for offset, batches in _each_offset(bt.seq_data_iter_sequential, n, b, t,
                                        range(t + 1)).items():
        _check_shifted_and_inside(batches, n, b, t)
        row = (n - offset - 1) // b               # ids per row, labels included in the corpus
        np.testing.assert_array_equal(batches[0][0][:, 0], offset + row * np.arange(b))
        for (X0, _), (X1, _) in zip(batches, batches[1:]):
            np.testing.assert_array_equal(X1[:, 0], X0[:, -1] + 1)
        assert len(batches) == row // t >= 1


def test_real_generator_draws_every_offset_of_the_range():
    b, t = 2, 4
    def first(sampler, seed):
        X, _ = next(iter(sampler(np.arange(40), b, t, np.random.default_rng(seed))))
        return int(X[0, 0])
    random_offsets = {first(bt.seq_data_iter_random, s) % t for s in range(200)}
    sequential_offsets = {first(bt.seq_data_iter_sequential, s) for s in range(200)}
    assert random_offsets == set(range(t)) and sequential_offsets == set(range(t + 1))


@SETTINGS
@given(st.integers(1, 8), st.integers(1, 30), st.integers(0, 20), st.integers(0, 5))
def test_sliding_windows_properties(t, num_train, num_val, extra):
    n = num_train + num_val + t + extra
    X_tr, Y_tr, X_va, Y_va = bt.sliding_windows(np.arange(n), t, num_train, num_val)
    assert X_tr.shape == Y_tr.shape == (num_train, t) and X_va.shape == (num_val, t)
    X, Y = np.concatenate([X_tr, X_va]), np.concatenate([Y_tr, Y_va])
    np.testing.assert_array_equal(X, np.arange(num_train + num_val)[:, None] + np.arange(t))
    np.testing.assert_array_equal(Y, X + 1)
    assert Y.max() <= n - 1


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 9), st.booleans(), st.booleans(), st.integers(0, 99))
def test_minibatches_properties(n, batch_size, shuffle, drop_last, seed):
    rng = np.random.default_rng(seed)
    got = list(bt.minibatches((np.arange(n), np.arange(n) * 10), batch_size, shuffle, rng,
                              drop_last))
    sizes = [len(a) for a, _ in got]
    whole, rest = divmod(n, batch_size)
    assert sizes == [batch_size] * whole + ([rest] if rest and not drop_last else [])
    rows = np.concatenate([a for a, _ in got]) if got else np.array([], int)
    assert len(set(rows.tolist())) == len(rows) and set(rows.tolist()) <= set(range(n))
    if not shuffle:
        np.testing.assert_array_equal(rows, np.arange(len(rows)))
    for a, c in got:
        np.testing.assert_array_equal(c, a * 10)   # the arrays stay aligned


@SETTINGS
@given(st.integers(1, 60), st.integers(1, 8))
def test_group_chunks_properties(n, batch_size):
    m = n // batch_size
    if m == 0:
        return
    order = bt.group_chunk_order(n, batch_size)
    assert sorted(order.tolist()) == list(range(m * batch_size))
    batches = order.reshape(m, batch_size)
    np.testing.assert_array_equal(batches[0], m * np.arange(batch_size))
    np.testing.assert_array_equal(np.diff(batches, axis=0), 1)   # row j continues row j
