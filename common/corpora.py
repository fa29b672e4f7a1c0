"""The corpora: The Time Machine, The War of the Worlds and Tiny Shakespeare (d2l's
preprocessing), English-French pairs (d2l 1.0's MTFraEng), and fastai's Human Numbers
(generated), plus summary statistics.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import atomic
from .config import check_choice
from .download import download, extract_zip
from .errors import DataError
from .vocab import Vocab

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
NMT_RESERVED = (PAD, BOS, EOS)
FRA_MEMBER = "fra-eng/fra.txt"
TOKEN_KINDS = ("char", "word")


# ---------------------------------------------------------------- The Time Machine (d2l 1.0)

def time_machine_path(path=None) -> Path:
    """The given path, or the cached download of d2l's `timemachine.txt`."""
    return _existing_file(path) if path is not None else download("time_machine")


def read_time_machine(path=None) -> str:
    """The raw text of The Time Machine, from `path` or from d2l's address."""
    return time_machine_path(path).read_text(encoding="utf-8")


def preprocess_time_machine(text: str) -> str:
    """d2l 1.0: every run of non-letters becomes one space, then lower case."""
    return re.sub("[^A-Za-z]+", " ", text).lower()


def tokenize(text: str, token: str = "char") -> List[str]:
    """Characters of `text`, or its words split on spaces (empty strings dropped)."""
    check_choice("token", token, TOKEN_KINDS)
    return list(text) if token == "char" else [t for t in text.split(" ") if t]


def letter_tokens(text: str, token: str = "char") -> List[str]:
    """Tokens of d2l's preprocessed text; none at all when the text has no letters."""
    text = preprocess_time_machine(text)
    return tokenize(text, token) if text.strip() else []


def load_text_corpus(text: str, token: str = "char", max_tokens: int = -1):
    """Preprocess and tokenize `text` as d2l does; the vocabulary counts every token.

    Returns (corpus, vocab): corpus (N,) int64 ids, cut to `max_tokens` when it is positive.
    """
    tokens = letter_tokens(text, token)
    if not tokens:
        raise DataError("the text has no letters: after d2l's preprocessing no token is left")
    vocab = Vocab(tokens)
    corpus = np.asarray(vocab[tokens], dtype=np.int64)
    return (corpus[:max_tokens] if max_tokens > 0 else corpus), vocab


def load_time_machine(path=None, token: str = "char", max_tokens: int = -1):
    """(corpus (N,) int64 ids, Vocab) of The Time Machine, d2l 0.17's `load_corpus_time_machine`."""
    return load_text_corpus(read_time_machine(path), token, max_tokens)


# ---------------------------------------------------------------- The War of the Worlds

def strip_gutenberg(text: str) -> str:
    """The book between the `*** START OF` and `*** END OF` lines of a Project Gutenberg file."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("*** START OF")), None)
    end = next((i for i, line in enumerate(lines) if line.startswith("*** END OF")), None)
    if start is None or end is None or end <= start:
        raise DataError("not a Project Gutenberg text: expected a '*** START OF' line followed "
                        "by a '*** END OF' line around the book")
    return "\n".join(lines[start + 1:end])


def read_war_of_the_worlds(path) -> str:
    """The book text of Gutenberg eBook #36 at `path` (BOM, CRLF, header and licence removed)."""
    # utf-8-sig drops the BOM; text mode turns CRLF into LF.
    return strip_gutenberg(_existing_file(path).read_text(encoding="utf-8-sig"))


def load_war_of_the_worlds(path, token: str = "char", max_tokens: int = -1):
    """(corpus (N,) int64 ids, Vocab) of The War of the Worlds, preprocessed like The Time Machine."""
    return load_text_corpus(read_war_of_the_worlds(path), token, max_tokens)


# ---------------------------------------------------------------- Tiny Shakespeare (char-rnn)

# karpathy/char-rnn's data/tinyshakespeare/input.txt: 40,000 lines of the plays, ASCII.
TINY_SHAKESPEARE = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                    "tinyshakespeare/input.txt", "04486597058d11dcc2c556b1d0433891eb639d2e")


def tiny_shakespeare_path(path=None) -> Path:
    """The given path, or the cached download of char-rnn's Tiny Shakespeare (SHA-1 checked)."""
    if path is not None:
        return _existing_file(path)
    url, sha1 = TINY_SHAKESPEARE
    return download("tinyshakespeare", url=url, sha1=sha1)


def read_tiny_shakespeare(path=None) -> str:
    """The raw text of Tiny Shakespeare, from `path` or from char-rnn's address."""
    return tiny_shakespeare_path(path).read_text(encoding="utf-8")


def load_tiny_shakespeare(path=None, token: str = "char", max_tokens: int = -1):
    """(corpus (N,) int64 ids, Vocab) of Tiny Shakespeare, preprocessed like The Time Machine."""
    return load_text_corpus(read_tiny_shakespeare(path), token, max_tokens)


# ---------------------------------------------------------------- English-French (d2l 1.0)

def fra_eng_path(path=None) -> Path:
    """`fra.txt`: the file given, `fra.txt` or `fra-eng/fra.txt` in a directory given, or
    the one extracted from d2l's downloaded `fra-eng.zip` in the cache."""
    if path is None:
        return extract_zip(download("fra-eng"), FRA_MEMBER)
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "fra.txt", path / FRA_MEMBER):
            if candidate.is_file():
                return candidate
        raise DataError(f"no fra.txt in {path} nor in {path / 'fra-eng'}")
    return _existing_file(path)


def read_fra_eng(path=None) -> str:
    """The raw text of `fra.txt` (see `fra_eng_path` for where it is looked for)."""
    return fra_eng_path(path).read_text(encoding="utf-8")


def preprocess_nmt(text: str) -> str:
    """d2l 1.0: U+202F and U+00A0 become spaces; a space goes before `,.!?` not preceded by one;
    lower case."""
    text = text.replace("\u202f", " ").replace("\xa0", " ")
    # The lookbehind needs a preceding character: d2l never adds a space at position 0.
    return re.sub(r"(?<=[^ ])([,.!?])", r" \1", text).lower()


def _sentence_tokens(sentence: str) -> List[str]:
    return [t for t in f"{sentence} {EOS}".split(" ") if t]


def tokenize_nmt(text: str, max_examples: Optional[int] = None):
    """(src, tgt): token lists of each `English<TAB>French` line, each ending in `<eos>`.

    Lines without exactly one tab are skipped (d2l). `max_examples` keeps that many pairs;
    d2l 1.0 stops one line later (`i > max_examples`), keeping one more.
    """
    src, tgt = [], []
    for line in text.split("\n"):
        if max_examples is not None and len(src) >= max_examples:
            break
        parts = line.split("\t")
        if len(parts) == 2:
            src.append(_sentence_tokens(parts[0]))
            tgt.append(_sentence_tokens(parts[1]))
    return src, tgt


def pad_or_trim(tokens: List[str], num_steps: int) -> List[str]:
    """The first `num_steps` tokens, padded with `<pad>` to exactly `num_steps`."""
    return tokens[:num_steps] + [PAD] * (num_steps - len(tokens))


def _rows(token_lists, num_steps: int, is_tgt: bool) -> List[List[str]]:
    rows = [pad_or_trim(tokens, num_steps) for tokens in token_lists]
    return [[BOS] + row for row in rows] if is_tgt else rows


def build_nmt_arrays(token_lists, vocab: Vocab, num_steps: int, is_tgt: bool = False):
    """d2l 1.0's `_build_array`: trim or pad each sentence to num_steps; a target then gets
    `<bos>` in front, so its rows have num_steps + 1 ids.

    Returns (ids, valid_len): ids (N, num_steps) or (N, num_steps + 1) int64; valid_len (N,)
    int64, the number of non-`<pad>` ids per row (the `<bos>` counts).
    """
    needed = [PAD, BOS] if is_tgt else [PAD]
    missing = [t for t in needed if t not in vocab]
    if missing:
        raise DataError(f"the vocabulary lacks the reserved tokens {missing}")
    rows = _rows(token_lists, num_steps, is_tgt)
    ids = np.array([vocab[row] for row in rows], dtype=np.int64).reshape(len(rows), -1)
    return ids, (ids != vocab[PAD]).sum(axis=1).astype(np.int64)


@dataclass(frozen=True)
class FraEng:
    """d2l 1.0's MTFraEng arrays. Rows [0, num_train) train, [num_train, N) validate.

    src: (N, num_steps) ids; src_valid_len: (N,); dec_in: (N, num_steps), `<bos>` then the
    target shifted right; label: (N, num_steps), the target with `<eos>`; label_valid_len:
    (N,) non-`<pad>` labels. src_tokens / tgt_tokens: the sentences' tokens before padding.
    """

    src_vocab: Vocab
    tgt_vocab: Vocab
    src: np.ndarray
    src_valid_len: np.ndarray
    dec_in: np.ndarray
    label: np.ndarray
    label_valid_len: np.ndarray
    src_tokens: List[List[str]]
    tgt_tokens: List[List[str]]
    num_train: int
    num_steps: int

    def arrays(self, train: bool) -> Tuple[np.ndarray, ...]:
        """(src, src_valid_len, dec_in, label) of the training or the validation rows."""
        rows = slice(0, self.num_train) if train else slice(self.num_train, None)
        return tuple(a[rows] for a in (self.src, self.src_valid_len, self.dec_in, self.label))


def load_fra_eng(path=None, num_steps: int = 9, num_train: int = 512, num_val: int = 128,
                 min_freq: int = 2) -> FraEng:
    """The first num_train + num_val pairs of fra.txt as d2l 1.0's MTFraEng builds them.

    Vocabularies (`<unk>`, `<pad>`, `<bos>`, `<eos>`, then words seen >= min_freq times) count
    the trimmed sentences of all these pairs, train and validation together, as d2l 1.0 does.
    d2l 1.0 reads one pair more than it asks for (see `tokenize_nmt`), so its validation set
    has num_val + 1 rows; here it has exactly num_val.
    """
    src, tgt = tokenize_nmt(preprocess_nmt(read_fra_eng(path)), num_train + num_val)
    if len(src) < num_train + num_val:
        raise DataError(f"fra.txt gave {len(src)} sentence pairs (lines 'English<TAB>French'); "
                        f"num_train + num_val = {num_train + num_val} are needed")
    src_vocab = Vocab(_rows(src, num_steps, False), min_freq, NMT_RESERVED)
    tgt_vocab = Vocab(_rows(tgt, num_steps, True), min_freq, NMT_RESERVED)
    src_ids, src_valid = build_nmt_arrays(src, src_vocab, num_steps)
    tgt_ids, _ = build_nmt_arrays(tgt, tgt_vocab, num_steps, is_tgt=True)
    label = tgt_ids[:, 1:]
    return FraEng(src_vocab, tgt_vocab, src_ids, src_valid, tgt_ids[:, :-1], label,
                  (label != tgt_vocab[PAD]).sum(axis=1).astype(np.int64), src, tgt,
                  num_train, num_steps)


def encode_sentence(sentence: str, vocab: Vocab, num_steps: int):
    """A user's sentence as encoder input: d2l's preprocessing, `<eos>`, trim or pad.

    Returns (ids (num_steps,) int64, valid_len int, words of the kept ids that became `<unk>`).
    Words past num_steps - 1 are cut, as in training.
    """
    words = preprocess_nmt(sentence).split()
    if not words:
        raise DataError("the sentence is empty: type some words to translate")
    row = pad_or_trim(words + [EOS], num_steps)
    unknown = [w for w in row if w not in vocab]
    ids = np.asarray(vocab[row], dtype=np.int64)
    return ids, int((ids != vocab[PAD]).sum()), unknown


# ---------------------------------------------------------------- Human Numbers (fastai)

_ONES = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _below_thousand(n: int) -> List[str]:
    words = []
    if n >= 100:
        words += [_ONES[n // 100 - 1], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10 - 2])
        n %= 10
    if n:
        words.append(_ONES[n - 1])
    return words


def number_to_words(n: int) -> str:
    """American English words as fastai's Human Numbers writes them, for 1 <= n < 1,000,000.

    Lower case, no "and", no hyphens: 101 -> "one hundred one", 8001 -> "eight thousand one".
    """
    if not 1 <= n < 1_000_000:
        raise ValueError(f"number_to_words covers 1 to 999,999, got {n}")
    head = _below_thousand(n // 1000) + ["thousand"] if n >= 1000 else []
    return " ".join(head + _below_thousand(n % 1000))


def human_numbers_files() -> Dict[str, str]:
    """The two files of fastai's `human_numbers.tgz`: train 1..7,999 and valid 8,001..9,999,
    one number a line with a trailing space (`one \\n`)."""
    lines = lambda numbers: "".join(f"{number_to_words(n)} \n" for n in numbers)
    return {"train.txt": lines(range(1, 8000)), "valid.txt": lines(range(8001, 10000))}


def write_human_numbers(directory) -> Path:
    """Write `train.txt` and `valid.txt` into `directory` (created if needed); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in human_numbers_files().items():
        atomic.write_text(directory / name, text, overwrite=True)
    return directory


def load_human_numbers(directory=None) -> List[str]:
    """fastbook ch. 12's token list: train then valid lines, stripped, joined with ' . ', split.

    Reads `directory`/{train,valid}.txt, or generates the files in memory when it is None.
    """
    if directory is None:
        files = human_numbers_files()
    else:
        files = {name: _existing_file(Path(directory) / name).read_text(encoding="utf-8")
                 for name in ("train.txt", "valid.txt")}
    lines = files["train.txt"].splitlines(True) + files["valid.txt"].splitlines(True)
    return " . ".join(line.strip() for line in lines).split(" ")


# ---------------------------------------------------------------- statistics

CORPORA = ("time_machine", "fra_eng", "human_numbers", "war_of_the_worlds", "tiny_shakespeare")
MIN_TOKENS = 2  # a language model needs at least one input and one target


def _existing_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a file; check the path (corpora: see the data README)")
    return path


def _text_tokens(name, path, token):
    token = check_choice("token", token or "char", TOKEN_KINDS)
    if name in ("time_machine", "tiny_shakespeare"):
        source = "path" if path is not None else "downloaded"
        path = (time_machine_path if name == "time_machine" else tiny_shakespeare_path)(path)
        text = path.read_text(encoding="utf-8")
    else:
        if path is None:
            raise ValueError("war_of_the_worlds is read from a file only: pass its path")
        source, text = "path", read_war_of_the_worlds(path)
    return letter_tokens(text, token), token, source, path, {}


def _fra_eng_tokens(path, token):
    token = check_choice("token for fra_eng", token or "src", ("src", "tgt"))
    source = "path" if path is not None else "downloaded"
    path = fra_eng_path(path)
    src, tgt = tokenize_nmt(preprocess_nmt(path.read_text(encoding="utf-8")))
    tokens = [t for line in (src if token == "src" else tgt) for t in line if t != EOS]
    return tokens, token, source, path, {"num_pairs": len(src)}


def _human_numbers_tokens(path, token):
    check_choice("token for human_numbers", token or "word", ("word",))
    source = "path" if path is not None else "generated"
    return load_human_numbers(path), "word", source, path, {}


def corpus_stats(name: str, path=None, token: Optional[str] = None, top: int = 10) -> dict:
    """Size, vocabulary and most common tokens of a corpus.

    `token`: char|word (default char) for time_machine and war_of_the_worlds; src|tgt (English
    or French words, `<eos>` not counted) for fra_eng; word for human_numbers. Keys: name,
    token, source (path|downloaded|generated), path, num_tokens, vocab_size (distinct tokens),
    vocab_size_with_unk (the length of the models' Vocab, which adds `<unk>`), top
    [(token, count)], and num_pairs for fra_eng.
    """
    check_choice("corpus", name, CORPORA)
    if name == "fra_eng":
        tokens, token, source, path, extra = _fra_eng_tokens(path, token)
    elif name == "human_numbers":
        tokens, token, source, path, extra = _human_numbers_tokens(path, token)
    else:
        tokens, token, source, path, extra = _text_tokens(name, path, token)
    if len(tokens) < MIN_TOKENS:
        what = "empty" if not tokens else f"too small ({len(tokens)} token)"
        raise DataError(f"the {name} corpus at {path or source} is {what} after preprocessing; "
                        f"at least {MIN_TOKENS} tokens are needed. Is it the right file?")
    counts = collections.Counter(tokens)
    return {"name": name, "token": token, "source": source,
            "path": None if path is None else str(path), "num_tokens": len(tokens),
            "vocab_size": len(counts), "vocab_size_with_unk": len(Vocab(counts.keys())),
            "top": counts.most_common(top), **extra}
