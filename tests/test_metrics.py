"""Metrics: hand-worked BLEU cases, agreement with d2l's counting loop, perplexity, accuracy."""
import collections
import math

import numpy as np
import pytest

from common import metrics


def d2l_bleu(pred_seq, label_seq, k):
    """d2l 1.0's `bleu`, loop for loop, as the reference."""
    pred_tokens, label_tokens = pred_seq.split(" "), label_seq.split(" ")
    len_pred, len_label = len(pred_tokens), len(label_tokens)
    score = math.exp(min(0, 1 - len_label / len_pred))
    for n in range(1, min(k, len_pred) + 1):
        num_matches, label_subs = 0, collections.defaultdict(int)
        for i in range(len_label - n + 1):
            label_subs[" ".join(label_tokens[i: i + n])] += 1
        for i in range(len_pred - n + 1):
            if label_subs[" ".join(pred_tokens[i: i + n])] > 0:
                num_matches += 1
                label_subs[" ".join(pred_tokens[i: i + n])] -= 1
        score *= math.pow(num_matches / (len_pred - n + 1), math.pow(0.5, n))
    return score


@pytest.mark.parametrize("pred, label, k, expected", [
    ("a b c d", "a b c d", 4, 1.0),
    ("va !", "va !", 2, 1.0),
    ("a b", "c d", 2, 0.0),
    ("A B", "A B C D E F", 2, math.exp(1 - 6 / 2)),
    ("a b c d", "a b d c", 2, (1 / 3) ** 0.25),
    ("the the the the", "the cat", 1, (1 / 4) ** 0.5),
    ("a b c", "a b", 1, (2 / 3) ** 0.5),
    ("a", "a b", 3, math.exp(1 - 2 / 1)),
    ("a b c", "x a b", 2, (2 / 3) ** 0.5 * (1 / 2) ** 0.25),
], ids=["identical", "d2l-example", "no-overlap", "brevity", "bigram-partial", "clipped-counts",
        "longer-than-label", "k-beyond-prediction", "unigram-and-bigram"])
def test_bleu_hand_worked(pred, label, k, expected):
    assert metrics.bleu(pred, label, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("pred, label, k", [
    ("il est paresseux .", "il est paresseux .", 2),
    ("je suis calme .", "je suis calme .", 3),
    ("il est <unk> .", "il est riche .", 2),
    ("je suis chez moi moi moi .", "je suis chez moi .", 4),
    ("a a b b a", "b a a b", 3),
], ids=["d2l-lazy", "d2l-calm", "unk", "repeats", "mixed"])
def test_bleu_agrees_with_d2l_loop(pred, label, k):
    assert metrics.bleu(pred, label, k) == pytest.approx(d2l_bleu(pred, label, k), rel=1e-12)


def test_bleu_token_lists_equal_strings():
    assert metrics.bleu(["a", "b", "c"], ["a", "b", "d"], 2) == metrics.bleu("a b c", "a b d", 2)


def test_bleu_empty_prediction_is_zero():
    assert metrics.bleu([], ["a"], 2) == 0.0


def test_corpus_bleu_is_mean_of_sentence_scores():
    preds, labels = ["a b", "a b"], ["a b", "c d"]
    assert metrics.corpus_bleu(preds, labels, 2) == pytest.approx(0.5)


@pytest.mark.parametrize("preds, labels", [(["a"], []), ([], [])], ids=["mismatch", "empty"])
def test_corpus_bleu_rejects_bad_input(preds, labels):
    with pytest.raises(ValueError):
        metrics.corpus_bleu(preds, labels, 2)


@pytest.mark.parametrize("nll, expected", [(0.0, 1.0), (math.log(5.0), 5.0)], ids=["zero", "log5"])
def test_perplexity(nll, expected):
    assert metrics.perplexity(nll) == pytest.approx(expected)


def test_perplexity_of_array():
    np.testing.assert_allclose(metrics.perplexity(np.log([2.0, 3.0])), [2.0, 3.0])


def test_accuracy():
    assert metrics.accuracy([[1, 2], [3, 4]], [[1, 0], [3, 4]]) == 0.75


def test_accuracy_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.accuracy([1, 2], [1, 2, 3])


def test_masked_mean():
    values = np.array([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert metrics.masked_mean(values, mask) == pytest.approx(2.0)


def test_masked_mean_empty_mask_raises():
    with pytest.raises(ValueError, match="no element"):
        metrics.masked_mean([1.0, 2.0], [0, 0])
