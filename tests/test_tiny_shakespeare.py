"""Tiny Shakespeare: the loader reads a path, or downloads char-rnn's file and checks its SHA-1."""
import pytest

from common import corpora as C
from common.download import sha1_file

from conftest import shared_data_dir


def test_loader_preprocesses_like_the_time_machine(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("First Citizen:\nBefore we proceed!\n", encoding="utf-8")
    corpus, vocab = C.load_tiny_shakespeare(path)
    assert "".join(vocab.to_tokens(list(corpus))) == "first citizen before we proceed "


def test_download_goes_to_char_rnn_with_its_sha1(monkeypatch, tmp_path):
    seen = {}
    def fake_download(name, cache=None, url=None, sha1=None):
        seen.update(name=name, url=url, sha1=sha1)
        (tmp_path / "input.txt").write_text("a b", encoding="utf-8")
        return tmp_path / "input.txt"
    monkeypatch.setattr(C, "download", fake_download)
    assert C.read_tiny_shakespeare() == "a b"
    assert seen["url"].endswith("karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
    assert seen["sha1"] == "04486597058d11dcc2c556b1d0433891eb639d2e"


def test_real_tiny_shakespeare_matches_the_recorded_hash():
    path = shared_data_dir() / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set RNNBENCH_DATA to the corpora directory)")
    assert sha1_file(path) == C.TINY_SHAKESPEARE[1]
    stats = C.corpus_stats("tiny_shakespeare", path)
    assert stats["vocab_size"] == 27 and stats["num_tokens"] > 1_000_000
