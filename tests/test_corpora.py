"""Corpora: d2l's Time Machine and English-French preprocessing, fastai's Human Numbers,
The War of the Worlds, and corpus statistics. Real files come from `shared_data_dir()`.
"""
import collections

import numpy as np
import pytest

from common import corpora as C
from common.download import DATA_HUB, sha1_file
from common.errors import DataError
from common.vocab import Vocab

from conftest import shared_data_dir


def data_file(relative):
    """A shared corpus file, or a skip that says which file is missing and where."""
    path = shared_data_dir() / relative
    if not path.is_file():
        pytest.skip(f"{relative} not found under {shared_data_dir()} (set RNNBENCH_DATA)")
    return path


def d2l_preprocess_nmt(text):
    """d2l 1.0's `MTFraEng._preprocess`, character loop and all, as the reference."""
    text = text.replace("\u202f", " ").replace("\xa0", " ")
    no_space = lambda char, prev_char: char in ",.!?" and prev_char != " "
    out = [" " + char if i > 0 and no_space(char, text[i - 1]) else char
           for i, char in enumerate(text.lower())]
    return "".join(out)


# ---------------------------------------------------------------- The Time Machine

@pytest.mark.parametrize("text, expected", [
    ("The Time Machine, by H. G. Wells\n", "the time machine by h g wells "),
    ("a1b", "a b"),
    ("--Hello--", " hello "),
    ("", ""),
], ids=["title", "digit", "edges", "empty"])
def test_preprocess_time_machine(text, expected):
    assert C.preprocess_time_machine(text) == expected


@pytest.mark.parametrize("token, expected", [
    ("char", [" ", "a", "b", " ", " ", "c"]),
    ("word", ["ab", "c"]),
], ids=["char", "word"])
def test_tokenize(token, expected):
    assert C.tokenize(" ab  c", token) == expected


def test_tokenize_unknown_kind_lists_choices():
    with pytest.raises(ValueError, match="char, word"):
        C.tokenize("ab", "byte")


@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("Abc, abd!\nBa.\n", encoding="utf-8")
    return path


def test_load_time_machine_ids_decode_to_preprocessed_text(small_text):
    corpus, vocab = C.load_time_machine(small_text)
    assert corpus.dtype == np.int64
    assert "".join(vocab.to_tokens(corpus)) == "abc abd ba "
    assert vocab.idx_to_token[:3] == ["<unk>", "a", "b"]  # a and b 3 times, then ' ' 3 times


def test_load_time_machine_max_tokens(small_text):
    corpus, vocab = C.load_time_machine(small_text, max_tokens=4)
    assert "".join(vocab.to_tokens(corpus)) == "abc "
    assert len(vocab) == 6  # the vocabulary still counts the whole text


def test_load_time_machine_words(small_text):
    corpus, vocab = C.load_time_machine(small_text, token="word")
    assert vocab.to_tokens(corpus) == ["abc", "abd", "ba"]


def test_load_time_machine_without_letters_raises(tmp_path):
    (tmp_path / "empty.txt").write_text("123 ... 456\n")
    with pytest.raises(DataError, match="no letters"):
        C.load_time_machine(tmp_path / "empty.txt")


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="not a file"):
        C.load_time_machine(tmp_path / "absent.txt")


def test_real_time_machine_has_d2l_hash():
    assert sha1_file(data_file("timemachine.txt")) == DATA_HUB["time_machine"][1]


def test_real_time_machine_char_corpus():
    corpus, vocab = C.load_time_machine(data_file("timemachine.txt"))
    assert len(vocab) == 28  # <unk>, space, 26 letters: as in d2l 1.0
    assert len(corpus) == 173428
    assert "".join(vocab.to_tokens(corpus[:17])) == "the time machine "


# ---------------------------------------------------------------- English-French

@pytest.mark.parametrize("text, expected", [
    ("Go.", "go ."),
    ("Cours\u202f!", "cours !"),
    ("Qui ?", "qui ?"),
    ("Tom\xa0?", "tom ?"),
    ("Wait!!", "wait ! !"),
    ("Yes, sir.", "yes , sir ."),
    (".Go", ".go"),
    ("A.\tB.\nC!", "a .\tb .\nc !"),
    ("\n.", "\n ."),
], ids=["period", "narrow-nbsp", "spaced", "nbsp", "double", "comma", "first-char",
        "two-lines", "after-newline"])
def test_preprocess_nmt(text, expected):
    assert C.preprocess_nmt(text) == expected
    assert d2l_preprocess_nmt(text) == expected


def test_preprocess_nmt_matches_d2l_on_real_text():
    head = "".join(data_file("fra-eng/fra.txt").read_text(encoding="utf-8")
                   .splitlines(True)[:5000])
    assert C.preprocess_nmt(head) == d2l_preprocess_nmt(head)


NMT_TEXT = "\n".join([
    "I see.\tJe vois.",
    "I see it.\tJe le vois.",
    "We see.\tNous voyons.",
    "a line without a tab",
    "I run.\tJe cours.",
    "two\ttabs\there",
    "We run!\tNous courons !",
    "I see a very big red dog running.\tJe vois un très grand chien rouge qui court.",
]) + "\n"


def test_tokenize_nmt_skips_lines_without_one_tab_and_appends_eos():
    src, tgt = C.tokenize_nmt(C.preprocess_nmt(NMT_TEXT))
    assert len(src) == len(tgt) == 6
    assert src[0] == ["i", "see", ".", "<eos>"]
    assert tgt[4] == ["nous", "courons", "!", "<eos>"]


def test_tokenize_nmt_max_examples_counts_pairs():
    src, tgt = C.tokenize_nmt(C.preprocess_nmt(NMT_TEXT), max_examples=4)
    assert len(src) == 4 and src[3] == ["i", "run", ".", "<eos>"]


def test_tokenize_nmt_drops_empty_tokens():
    src, _ = C.tokenize_nmt("a  b \tc\n")
    assert src == [["a", "b", "<eos>"]]


@pytest.fixture
def fra_file(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(NMT_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def fra(fra_file):
    return C.load_fra_eng(fra_file, num_steps=5, num_train=4, num_val=2)


def test_load_fra_eng_vocab_counts_trimmed_sentences(fra):
    # Counting whole sentences would put '.' (5 times) before 'i' and 'see' (4 times each).
    assert fra.src_vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "<eos>", "i", "see", ".",
                                          "we", "run"]
    assert fra.tgt_vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "<eos>", "je", ".", "vois",
                                          "nous"]


def test_load_fra_eng_arrays(fra):
    assert fra.src.shape == fra.dec_in.shape == fra.label.shape == (6, 5)
    np.testing.assert_array_equal(fra.src[0], [4, 5, 6, 3, 1])  # i see . <eos> <pad>
    np.testing.assert_array_equal(fra.src_valid_len, [4, 5, 4, 4, 4, 5])
    np.testing.assert_array_equal(fra.dec_in[0], [2, 4, 6, 5, 3])  # <bos> je vois . <eos>
    np.testing.assert_array_equal(fra.label[0], [4, 6, 5, 3, 1])  # je vois . <eos> <pad>
    np.testing.assert_array_equal(fra.label[5], [4, 6, 0, 0, 0])  # je vois un très grand
    np.testing.assert_array_equal(fra.label_valid_len, [4, 5, 4, 4, 4, 5])


def test_load_fra_eng_decoder_input_is_label_shifted_right(fra):
    assert (fra.dec_in[:, 0] == fra.tgt_vocab["<bos>"]).all()
    np.testing.assert_array_equal(fra.dec_in[:, 1:], fra.label[:, :-1])


@pytest.mark.parametrize("train, rows", [(True, 4), (False, 2)], ids=["train", "val"])
def test_load_fra_eng_split(fra, train, rows):
    src, src_valid, dec_in, label = fra.arrays(train)
    assert len(src) == len(src_valid) == len(dec_in) == len(label) == rows
    np.testing.assert_array_equal(src[0], fra.src[0 if train else 4])


def test_load_fra_eng_too_few_pairs_raises(fra_file):
    with pytest.raises(DataError, match="gave 6 sentence pairs.*11"):
        C.load_fra_eng(fra_file, num_train=8, num_val=3)


@pytest.mark.parametrize("layout", ["file", "directory", "parent-directory"])
def test_fra_eng_path_accepts_file_or_directory(tmp_path, layout):
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text(NMT_TEXT, encoding="utf-8")
    given = {"file": tmp_path / "fra-eng" / "fra.txt", "directory": tmp_path / "fra-eng",
             "parent-directory": tmp_path}[layout]
    assert C.fra_eng_path(given) == tmp_path / "fra-eng" / "fra.txt"


def test_fra_eng_path_directory_without_file_raises(tmp_path):
    with pytest.raises(DataError, match="no fra.txt"):
        C.fra_eng_path(tmp_path)


def test_build_nmt_arrays_target_gets_bos_and_trim(fra):
    ids, valid = C.build_nmt_arrays([["je", "vois", "nous", "je", "vois", "<eos>"]],
                                    fra.tgt_vocab, 3, is_tgt=True)
    np.testing.assert_array_equal(ids, [[2, 4, 6, 7]])  # <bos> je vois nous: <eos> cut
    assert valid.tolist() == [4] and ids.dtype == valid.dtype == np.int64


def test_build_nmt_arrays_needs_pad_in_vocab():
    with pytest.raises(DataError, match="<pad>"):
        C.build_nmt_arrays([["a"]], Vocab(["a"]), 3)


@pytest.mark.parametrize("sentence, ids, valid_len, unknown", [
    ("I see.", [4, 5, 6, 3, 1], 4, []),
    ("I see it!", [4, 5, 0, 0, 3], 5, ["it", "!"]),
    ("I see I see I see", [4, 5, 4, 5, 4], 5, []),
], ids=["known", "unknown-words", "trimmed"])
def test_encode_sentence(fra, sentence, ids, valid_len, unknown):
    got_ids, got_valid, got_unknown = C.encode_sentence(sentence, fra.src_vocab, 5)
    assert got_ids.tolist() == ids and got_valid == valid_len and got_unknown == unknown


@pytest.mark.parametrize("sentence", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_encode_empty_sentence_raises(fra, sentence):
    with pytest.raises(DataError, match="empty"):
        C.encode_sentence(sentence, fra.src_vocab, 5)


def test_real_fra_eng_first_pair():
    src, tgt = C.tokenize_nmt(C.preprocess_nmt(C.read_fra_eng(data_file("fra-eng/fra.txt"))), 2)
    assert (src[0], tgt[0]) == (["go", ".", "<eos>"], ["va", "!", "<eos>"])


def test_real_fra_eng_d2l_sizes():
    data = C.load_fra_eng(data_file("fra-eng/fra.txt").parent)
    assert data.src.shape == data.label.shape == (640, 9)
    assert [len(a) for a in data.arrays(True)] == [512] * 4
    assert [len(a) for a in data.arrays(False)] == [128] * 4
    assert data.src_vocab.to_tokens(data.src[0, :3].tolist()) == ["go", ".", "<eos>"]


# ---------------------------------------------------------------- Human Numbers

@pytest.mark.parametrize("n, words", [
    (1, "one"), (13, "thirteen"), (20, "twenty"), (21, "twenty one"), (40, "forty"),
    (100, "one hundred"), (101, "one hundred one"), (110, "one hundred ten"),
    (999, "nine hundred ninety nine"), (1000, "one thousand"), (1005, "one thousand five"),
    (2400, "two thousand four hundred"), (8001, "eight thousand one"),
    (9999, "nine thousand nine hundred ninety nine"),
    (123456, "one hundred twenty three thousand four hundred fifty six"),
], ids=lambda v: str(v) if isinstance(v, int) else None)
def test_number_to_words(n, words):
    assert C.number_to_words(n) == words


@pytest.mark.parametrize("n", [0, -3, 1_000_000], ids=["zero", "negative", "million"])
def test_number_to_words_out_of_range(n):
    with pytest.raises(ValueError, match="1 to 999,999"):
        C.number_to_words(n)


@pytest.fixture(scope="module")
def hn_files():
    return C.human_numbers_files()


@pytest.mark.parametrize("name, count, first, last", [
    ("train.txt", 7999, "one \n", "seven thousand nine hundred ninety nine \n"),
    ("valid.txt", 1999, "eight thousand one \n", "nine thousand nine hundred ninety nine \n"),
], ids=["train", "valid"])
def test_human_numbers_file_format(hn_files, name, count, first, last):
    lines = hn_files[name].splitlines(True)
    assert (len(lines), lines[0], lines[-1]) == (count, first, last)


def test_human_numbers_leave_out_eight_thousand(hn_files):
    assert "eight thousand \n" not in hn_files["train.txt"] + hn_files["valid.txt"]


def test_write_and_load_human_numbers_directory(tmp_path, hn_files):
    directory = C.write_human_numbers(tmp_path / "human_numbers")
    assert (directory / "train.txt").read_bytes() == hn_files["train.txt"].encode()
    assert C.load_human_numbers(directory) == C.load_human_numbers()


@pytest.fixture(scope="module")
def hn_tokens():
    return C.load_human_numbers()


def test_human_numbers_token_count(hn_tokens):
    assert len(hn_tokens) == 63095


def test_human_numbers_vocab_first_seen(hn_tokens):
    vocab = list(dict.fromkeys(hn_tokens))
    assert len(vocab) == 30
    assert vocab[:5] == ["one", ".", "two", "three", "four"]
    assert vocab[-4:] == ["eighty", "ninety", "hundred", "thousand"]


def fastbook_sequences(tokens):
    """fastbook ch. 12: (three tokens, next token) every three tokens."""
    return [(tokens[i:i + 3], tokens[i + 3]) for i in range(0, len(tokens) - 4, 3)]


def test_human_numbers_three_token_sequences(hn_tokens):
    assert len(fastbook_sequences(hn_tokens)) == 21031


def test_human_numbers_most_common_validation_target(hn_tokens):
    seqs = fastbook_sequences(hn_tokens)
    valid = seqs[int(len(seqs) * 0.8):]
    token, count = collections.Counter(y for _, y in valid).most_common(1)[0]
    assert (token, count / len(valid)) == ("thousand", 0.15165200855716662)


# ---------------------------------------------------------------- The War of the Worlds

GUTENBERG = ("\ufeffThe Project Gutenberg eBook of A Book\r\n\r\nLicence words.\r\n"
             "*** START OF THE PROJECT GUTENBERG EBOOK A BOOK ***\r\n"
             "Chapter One.\r\nIt was 1894.\r\n"
             "*** END OF THE PROJECT GUTENBERG EBOOK A BOOK ***\r\nMore licence.\r\n")


def test_war_of_the_worlds_strips_bom_crlf_header_footer(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(GUTENBERG.encode("utf-8"))
    assert C.read_war_of_the_worlds(path) == "Chapter One.\nIt was 1894."


def test_war_of_the_worlds_char_corpus(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(GUTENBERG.encode("utf-8"))
    corpus, vocab = C.load_war_of_the_worlds(path)
    assert "".join(vocab.to_tokens(corpus)) == "chapter one it was "


@pytest.mark.parametrize("text", [
    "no markers at all\n",
    "*** START OF X ***\nbook\n",
    "*** END OF X ***\nbook\n*** START OF X ***\n",
], ids=["none", "no-end", "reversed"])
def test_strip_gutenberg_without_markers_raises(text):
    with pytest.raises(DataError, match="START OF"):
        C.strip_gutenberg(text)


def test_real_war_of_the_worlds_header_stripped():
    text = C.read_war_of_the_worlds(data_file("war_of_the_worlds.txt"))
    assert "gutenberg" not in text.lower() and "\r" not in text and "\ufeff" not in text
    assert text.lstrip().startswith("cover") and "The War of the Worlds" in text[:100]


# ---------------------------------------------------------------- statistics

def test_corpus_stats_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="time_machine, fra_eng, human_numbers, war_of_the_worlds, tiny_shakespeare"):
        C.corpus_stats("penn_treebank")


def test_corpus_stats_human_numbers_generated():
    stats = C.corpus_stats("human_numbers")
    assert (stats["source"], stats["path"], stats["num_tokens"]) == ("generated", None, 63095)
    assert (stats["vocab_size"], stats["vocab_size_with_unk"]) == (30, 31)
    assert stats["top"][:3] == [(".", 9997), ("hundred", 9000), ("thousand", 8999)]


@pytest.mark.parametrize("token, num_tokens, top", [
    ("char", 11, [("a", 3), ("b", 3), (" ", 3)]),
    ("word", 3, [("abc", 1), ("abd", 1), ("ba", 1)]),
], ids=["char", "word"])
def test_corpus_stats_time_machine_from_path(small_text, token, num_tokens, top):
    stats = C.corpus_stats("time_machine", small_text, token=token, top=3)
    assert (stats["source"], stats["path"]) == ("path", str(small_text))
    assert (stats["num_tokens"], stats["top"]) == (num_tokens, top)


@pytest.mark.parametrize("token, top", [("src", [(".", 5), ("i", 4), ("see", 4)]),
                                        ("tgt", [(".", 5), ("je", 4), ("vois", 3)])],
                         ids=["english", "french"])
def test_corpus_stats_fra_eng(fra_file, token, top):
    stats = C.corpus_stats("fra_eng", fra_file, token=token, top=3)
    assert stats["num_pairs"] == 6 and stats["top"] == top


def test_corpus_stats_war_of_the_worlds_needs_path():
    with pytest.raises(ValueError, match="pass its path"):
        C.corpus_stats("war_of_the_worlds")


@pytest.mark.parametrize("content, match", [
    ("", "is empty"), ("12 34\n", "is empty"), ("a", "too small"),
], ids=["empty-file", "no-letters", "one-token"])
def test_corpus_stats_empty_or_tiny_raises(tmp_path, content, match):
    (tmp_path / "t.txt").write_text(content)
    with pytest.raises(DataError, match=match):
        C.corpus_stats("time_machine", tmp_path / "t.txt")


def test_corpus_stats_real_time_machine():
    stats = C.corpus_stats("time_machine", data_file("timemachine.txt"))
    assert (stats["num_tokens"], stats["vocab_size"], stats["vocab_size_with_unk"]) == (
        173428, 27, 28)
    assert stats["top"][0] == (" ", 32775)
