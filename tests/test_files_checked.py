"""Every file the suite reads is checked before it is trusted, and every results file is written
atomically with ordinary permissions: the download cache and what is extracted from it, the
speed records, checkpoints old and new."""
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from bench.core import records
from bench.speed import records as rec
from common import atomic, corpora, download as dl
from common.checkpoint import load_params, save_params
from common.errors import DataError
from common.speedcase import SpeedCase


def _zip(path, text):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(corpora.FRA_MEMBER, text)
    return path


def test_a_damaged_cached_download_is_reported_and_fetched_again(tmp_path, capsys):
    upstream = tmp_path / "corpus.txt"
    upstream.write_bytes(b"the real text\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(b"the real t")
    got = dl.download("x", cache=cache, url=upstream.as_uri(), sha1=dl.sha1_file(upstream))
    assert got.read_bytes() == b"the real text\n"
    err = capsys.readouterr().err
    assert "cache/corpus.txt is damaged or stale" in err and "downloading it again" in err


def test_a_replaced_archive_is_extracted_again(tmp_path, capsys):
    archive = _zip(tmp_path / "fra-eng.zip", "Go.\tVa !\n")
    assert dl.extract_zip(archive, corpora.FRA_MEMBER).read_text() == "Go.\tVa !\n"
    _zip(archive, "Hi.\tSalut !\n")                       # a new archive, same name
    assert dl.extract_zip(archive, corpora.FRA_MEMBER).read_text() == "Hi.\tSalut !\n"
    assert "extracting it again" in capsys.readouterr().err


def test_a_damaged_extraction_is_extracted_again(tmp_path, capsys):
    archive = _zip(tmp_path / "fra-eng.zip", "Go.\tVa !\n")
    member = dl.extract_zip(archive, corpora.FRA_MEMBER)
    member.write_text("Go.\tVa")                           # cut short by a killed extraction
    assert dl.extract_zip(archive, corpora.FRA_MEMBER).read_text() == "Go.\tVa !\n"
    assert "does not match" in capsys.readouterr().err


def test_a_damaged_archive_is_a_one_line_error(tmp_path):
    archive = tmp_path / "fra-eng.zip"
    archive.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="fra-eng.zip.*download it again"):
        dl.extract_zip(archive, corpora.FRA_MEMBER)


def _record(n):
    case = SpeedCase("torch", "scratch", "lstm", "train", hidden=8 + n, batch=2, steps=3, vocab=5)
    return rec.StepRecord(case=case, status=rec.NOT_SUPPORTED, note="stand-in",
                          tokens_per_s=float(n))


def test_an_append_after_a_torn_line_keeps_the_new_record(tmp_path):
    path = tmp_path / rec.FILENAME
    rec.append(path, _record(1))
    with open(path, "ab") as f:
        f.write(rec.to_json(_record(2)).encode()[:30])    # a writer killed mid-line
    rec.append(path, _record(3))
    got, skipped = rec.read_checked(path)
    assert [r.tokens_per_s for r in got] == [1.0, 3.0]
    assert len(skipped) == 1 and f"{path} line 2" in skipped[0]


def test_an_undecodable_line_is_skipped_and_named(tmp_path):
    path = tmp_path / rec.FILENAME
    rec.append(path, _record(1))
    with open(path, "ab") as f:
        f.write(b"\xff\xfe\x00garbage\n")
    rec.append(path, _record(2))
    got, skipped = rec.read_checked(path)
    assert [r.tokens_per_s for r in got] == [1.0, 2.0]
    assert skipped and str(path) in skipped[0] and "line 2" in skipped[0]
    assert len(rec.read(path)) == 2


def test_the_report_notes_skipped_lines(tmp_path):
    from bench.report import run_report as report
    path = tmp_path / rec.FILENAME
    rec.append(path, _record(1))
    with open(path, "ab") as f:
        f.write(b'{"kind": "step", "case"')
    text = report.build(tmp_path)
    assert "Lines skipped" in text and "line 2" in text


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_results_files_are_written_with_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        json_path = records.write_json(tmp_path / "r.json", {"a": 1})
        ckpt = save_params(tmp_path / "c.safetensors", {"w": np.ones(2)}, {"k": 1})
        npz = save_params(tmp_path / "c.npz", {"w": np.ones(2)})
        png = atomic.write_bytes(tmp_path / "p.png", b"\x89PNG")
    finally:
        os.umask(old)
    assert [_mode(p) for p in (json_path, ckpt, npz, png)] == [0o644] * 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp left


def test_both_checkpoint_formats_round_trip_and_damage_is_named(tmp_path):
    params = {"W": np.arange(6.0).reshape(2, 3), "b": np.zeros(3, np.float32)}
    for name in ("c.safetensors", "c.npz"):
        path = save_params(tmp_path / name, params, {"epoch": 2})
        back, meta = load_params(path)
        assert meta == {"epoch": 2} and back["W"].dtype == np.float64
        np.testing.assert_array_equal(back["W"], params["W"])
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-9])
        with pytest.raises(DataError, match=f"{name} is damaged"):
            load_params(path)


def test_a_non_finite_checkpoint_is_refused_when_asked(tmp_path):
    with pytest.raises(DataError, match="NaN or inf"):
        save_params(tmp_path / "c.safetensors", {"W": np.array([1.0, np.nan])},
                    require_finite=True)
    assert list(tmp_path.iterdir()) == []


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_bytes(b"\xff{")
    with pytest.raises(DataError, match="x.json is not valid JSON"):
        records.read_json(bad)
    assert json.loads(json.dumps(records.read_json(records.write_json(tmp_path / "y.json",
                                                                      [1])))) == [1]


def test_an_older_npz_checkpoint_still_generates(tmp_path):
    """Checkpoints written before safetensors (`.npz`) load and generate as they did."""
    pytest.importorskip("torch")
    import dataclasses

    from bench.lm.generate import generate, load_checkpoint
    from common.config import LMConfig
    from common.params import init_lm_params
    from common.vocab import Vocab
    vocab = Vocab(list("one two"))
    cfg = LMConfig("lstm", "scratch", len(vocab), 4)
    meta = {"model": dataclasses.asdict(cfg), "vocab": vocab.to_dict(), "token": "char"}
    path = save_params(tmp_path / "checkpoint.npz", init_lm_params(cfg), meta)
    be, model, vocab, token, _ = load_checkpoint(path, "torch")
    assert generate(be, model, vocab, token, "one", 5).startswith("one")
